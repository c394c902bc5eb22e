//! `flow run FLOW --data FILE` (a batch run into `.flow/runs/<name>/`) and
//! `flow run --resume RUN` (run only the missing and failed lines of an earlier run, with the
//! settings it started with). This module parses the flags into a [`Plan`], runs it through
//! the library's one batch path ([`flow::batch::run_to_dir`]), prints the summary and turns
//! the outcome into an exit status.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;

use super::common::{
    OutputFormat, absolute, executor_options, load_flow, parse_variants, prepare, run_settings,
};
use super::output::{Failure, color_stderr, dim};
use super::progress::CliProgress;
use super::runtime;
use super::settings::{BatchOptions, Count, DEFAULT_CONCURRENCY, ModelArgs, Seconds};
use flow::batch::{BatchConfig, BatchOutcome, BatchStart, DirBatch, Progress, run_to_dir};
use flow::cache::CacheMode;
use flow::data::ColumnMapping;
use flow::model::{Flow, VariantSelection};
use flow::record::LineResult;
use flow::run_store::remote::RemoteDir;
use flow::run_store::{self, RunDir, RunMeta, Shard, ShardInfo};

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
    #[command(flatten)]
    pub options: BatchOptions,
    /// Exit 0 even when some lines failed (a run where every line failed still exits 1).
    #[arg(long)]
    pub allow_failures: bool,
    /// Finish an earlier run: run only its missing and failed lines.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["data", "variant", "column_mapping", "base_run", "name", "inputs", "node", "init"])]
    pub resume: Option<String>,
    /// A flex flow's class entry `__init__` arguments: NAME=VALUE (repeatable) or a JSON file
    /// holding an object (a connection parameter takes a connection name, a model
    /// configuration an object of its fields).
    #[arg(long, value_name = "NAME=VALUE|FILE.json", num_args = 1..)]
    pub init: Vec<String>,
    /// Run only shard K of N (1-based): the lines whose number n has n % N == K-1, with their
    /// original line numbers. Merge the shards with `flow runs merge`.
    #[arg(long, value_name = "K/N", env = "FLOW_SHARD")]
    pub shard: Option<String>,
    /// Run shard JOB_COMPLETION_INDEX+1 of N (a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub shards: Option<Count>,
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
    /// A flex flow's `--init` values, as recorded (see [`super::common::init_record`]).
    pub init_args: Vec<String>,
    /// A flex flow's init given as values (a resumed experiment run's `init:`).
    pub init_values: serde_json::Map<String, serde_json::Value>,
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

/// `flow run --data` / `flow run --resume`: plan the batch from the flags (or from the run
/// being resumed), run it, upload it when asked, and report.
pub fn run(
    flow: Option<&Path>,
    variants: &[String],
    output: OutputFormat,
    b: &BatchArgs,
    model: &ModelArgs,
) -> Result<(), Failure> {
    let project = super::common::workdir()?.root;
    let (plan, model) = plan(flow, variants, b, model, &project)?;
    let reporting = Reporting {
        output,
        allow_failures: b.allow_failures,
    };
    let result = run_plan(&plan, &model, reporting);
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
        .map_err(|e| Failure::context("cannot upload the run", &e))?;
    eprintln!("uploaded {} ({files} files) to {remote}", dir.name());
    Ok(())
}

/// The shard of `--shard K/N` or of `--shards N` with `JOB_COMPLETION_INDEX`, if any.
pub(super) fn shard_from(
    shard: Option<&str>,
    shards: Option<Count>,
) -> Result<Option<Shard>, Failure> {
    let usage = |e: run_store::ShardError| Failure::usage(format!("error: {e}"));
    match (shard, shards.map(Count::get)) {
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

/// Run a planned batch: load and prepare the flow, run every line into the run directory
/// (through [`run_to_dir`]), print the summary. Configuration problems are `Err`; failed lines,
/// a stop or an unusable endpoint come back in `Finished::failure` with the run's record, so
/// callers (like `flow eval`) can go on.
pub(super) fn run_plan(
    plan: &Plan,
    model: &ModelArgs,
    reporting: Reporting,
) -> Result<Finished, Failure> {
    let mut flow = load_flow(&plan.flow_path, &plan.selections)?;
    super::common::apply_recorded_init(&mut flow, &plan.init_args, &plan.init_values)?;
    let mapping = ColumnMapping::parse(&plan.mapping_args)
        .map_err(|e| Failure::usage(format!("error: {e}")))?;
    if plan.base_run.is_none() && mapping.needs_base_run() {
        return Err(Failure::usage(
            "error: --column-mapping uses ${run.outputs...} or ${run.inputs...} but no --run BASE was given\n  help: add --run <base run name>",
        ));
    }
    let shard_info = match plan.shard {
        Some(shard) => Some(shard_info(&flow, plan, shard)?),
        None => None,
    };
    let mut options = executor_options(model, &flow)?;
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
    let mut settings = run_settings(model, plan.line_timeout);
    settings.require_base_line = plan.require_base_line;
    settings.sample = plan.sample;
    settings.upload = plan.upload.as_ref().map(RemoteDir::to_string);
    settings.init = plan.init_args.clone();
    settings.init_values = plan.init_values.clone();
    let batch = DirBatch {
        dir: plan.dir.clone(),
        data: plan.data.clone(),
        mapping,
        mapping_args: plan.mapping_args.clone(),
        base_run: plan.base_run.clone(),
        require_base_line: plan.require_base_line,
        config: BatchConfig {
            concurrency: plan.concurrency,
            line_timeout,
            ..BatchConfig::default()
        },
        settings,
        offline: model.offline,
        shard: shard_info,
        resume: plan.resumed.clone(),
        trace: flow::telemetry::OtlpConfig::from_env(),
    };

    let rt = runtime()?;
    super::on_workers(&rt, async move {
        let executor = prepare(flow, &options).await?;
        let result = execute(&executor, &batch, reporting).await;
        executor.shutdown().await;
        result
    })
}

/// Run `batch` with Ctrl-C as its stop signal and a progress bar, then print its summary.
async fn execute(
    executor: &flow::executor::Executor,
    batch: &DirBatch,
    reporting: Reporting,
) -> Result<Finished, Failure> {
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
    let progress = RunProgress::new(color_stderr());
    let run = run_to_dir(executor, batch, &progress, cancel_rx).await;
    ctrl_c.abort();
    progress.finish();
    // The run directory is flow's own (I/O, exit 4); the dataset and base run the user's (2).
    let run = run.map_err(|e| Failure::of(&e))?;
    if run.finished_before {
        eprintln!(
            "run `{}` already finished: every line succeeded; nothing to resume",
            run.meta.name
        );
        return Ok(Finished {
            meta: run.meta,
            failure: None,
        });
    }
    report(
        &run.meta,
        &run.outcome,
        &batch.dir,
        reporting.output,
        run.elapsed,
        progress.done(),
    );
    if let Some(warning) = &run.cache_warning {
        eprintln!("warning: {warning}");
    }
    if let Some(e) = run.data_error {
        return Err(Failure::usage(format!(
            "error: reading the data stopped early: {e}"
        )));
    }
    let failure = judge(&run.meta, &run.outcome, reporting);
    Ok(Finished {
        meta: run.meta,
        failure,
    })
}

/// What a batch shows while it runs: a line saying what runs (or what a resume keeps), then
/// the progress bar (plain progress lines off a terminal).
struct RunProgress {
    color: bool,
    bar: OnceLock<CliProgress>,
}

impl RunProgress {
    fn new(color: bool) -> Self {
        RunProgress {
            color,
            bar: OnceLock::new(),
        }
    }

    /// Lines run in this attempt.
    fn done(&self) -> usize {
        self.bar.get().map_or(0, CliProgress::done)
    }

    /// Clear the bar before the summary is printed.
    fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish();
        }
    }
}

impl Progress for RunProgress {
    fn started(&self, start: &BatchStart) {
        let line = if start.resumed {
            format!(
                "resuming {}: {} of {} lines already succeeded; running the rest",
                start.run, start.kept, start.total
            )
        } else {
            format!(
                "run {} · {} lines{} · concurrency {}",
                start.run,
                start.total,
                start
                    .shard
                    .map(|s| format!(" (shard {s})"))
                    .unwrap_or_default(),
                start.concurrency
            )
        };
        eprintln!("{}", dim(&line, self.color));
        for notice in &start.notices {
            eprintln!("{notice}");
        }
        let _ = self
            .bar
            .set(CliProgress::new(Some(start.total), 0, self.color));
    }

    fn lines_kept(&self, lines: usize) {
        if let Some(bar) = self.bar.get() {
            bar.lines_kept(lines);
        }
    }

    fn line_finished(&self, line: &LineResult) {
        if let Some(bar) = self.bar.get() {
            bar.line_finished(line);
        }
    }
}

/// What `meta.json` records about shard `shard` of the dataset; a resumed shard must still run
/// the same flow on the same data.
fn shard_info(flow: &Flow, plan: &Plan, shard: Shard) -> Result<ShardInfo, Failure> {
    let info = ShardInfo::of(flow, &plan.data, shard)
        .map_err(|e| Failure::usage(format!("error: {e}")))?;
    if let Some(before) = plan.resumed.as_ref().and_then(|m| m.shard.as_ref())
        && let Some(what) = info.changed_since(before)
    {
        return Err(Failure::usage(format!(
            "error: {what} changed since shard {} (run `{}`) started, so its lines would not merge with the other shards\n  help: run it again under a new --name, or restore {what}",
            before.shard(),
            plan.dir.name()
        )));
    }
    Ok(info)
}

/// Python workers for a batch: enough to keep up with the lines in flight without starting
/// more interpreters than the machine can run (each is a process).
pub(super) fn python_workers(concurrency: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    concurrency.clamp(1, (2 * cores).max(4))
}

/// The batch the flags ask for, and the model flags it runs with (for a resumed run: those it
/// started with, and the ones given now over them).
fn plan(
    flow: Option<&Path>,
    variants: &[String],
    b: &BatchArgs,
    model: &ModelArgs,
    project: &Path,
) -> Result<(Plan, ModelArgs), Failure> {
    let upload_root = match &b.upload {
        Some(url) => Some(
            RemoteDir::parse(url).map_err(|e| Failure::usage(format!("error: --upload: {e}")))?,
        ),
        None => None,
    };
    if let Some(run) = &b.resume {
        let dir = super::runs::locate(project, run)?;
        // An evaluation's batch finished alone would leave its scores, gates and reports as
        // they were: `flow eval --resume` finishes all of it.
        if dir.path.join(flow::eval::eval_dir::COMMAND_FILE).is_file() {
            return Err(Failure::usage(format!(
                "error: `{}` is an evaluation: `flow run --resume` would finish its evaluation flow's lines but not its scores, gates and reports\n  help: flow eval --resume {}",
                dir.name(),
                dir.name()
            )));
        }
        return resume_plan(dir, b, model, upload_root);
    }
    let shard = shard_from(b.shard.as_deref(), b.shards)?;
    let Some(flow_path) = flow.map(Path::to_path_buf) else {
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
    let selections = parse_variants(variants)?;
    let data_hash = match shard {
        Some(_) => Some(data_hash(&data)?),
        None => None,
    };
    let name = match &b.options.name {
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
            .map_err(|e| Failure::context("--upload", &e))?;
        if found {
            eprintln!("{remote} exists: downloading it to resume it");
            rt.block_on(remote.download(&dir.path))
                .map_err(|e| Failure::context(format!("cannot download {remote}"), &e))?;
            downloaded = true;
        }
    }
    if downloaded && shard.is_none() {
        return resume_plan(dir, b, model, upload_root);
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
            return resume_plan(dir, b, model, upload_root);
        }
        return Err(Failure::usage(format!(
            "error: a run named `{name}` already exists at {}\n  help: pick another --name, `flow run --resume {name}` to finish it, or `flow runs delete {name}`",
            dir.path.display()
        )));
    }
    let plan = Plan {
        flow_path,
        selections,
        data: absolute(&data),
        mapping_args: b.column_mapping.clone(),
        base_run: base_run.map(|p| absolute(&p)),
        dir,
        resumed: None,
        require_base_line: false,
        sample: None,
        concurrency: b.options.concurrency(),
        line_timeout: b.options.line_timeout.map(Seconds::as_secs_f64),
        shard,
        upload: remote,
        init_args: super::common::init_record(&b.init),
        init_values: serde_json::Map::new(),
    };
    Ok((plan, model.clone()))
}

/// `sha256:` of a dataset, or a usage error.
fn data_hash(data: &Path) -> Result<String, Failure> {
    flow::hash::sha256_file(data)
        .map_err(|e| Failure::usage(format!("error: cannot read {}: {e}", data.display())))
}

/// The plan that finishes the run in `dir` the way it started: with the settings it recorded,
/// except those given again now (each such change is printed as a note).
fn resume_plan(
    dir: RunDir,
    b: &BatchArgs,
    model: &ModelArgs,
    upload_root: Option<RemoteDir>,
) -> Result<(Plan, ModelArgs), Failure> {
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
    let mut resumed = Resumed::default();
    let stored = &meta.settings;
    let model = resumed.model(model, &meta)?;
    let concurrency = resumed.pick(
        "--concurrency",
        b.options.concurrency.map(Count::get),
        Some(meta.concurrency),
        usize::to_string,
    );
    let line_timeout = resumed.pick(
        "--line-timeout",
        b.options.line_timeout.map(Seconds::as_secs_f64),
        stored.line_timeout_s,
        f64::to_string,
    );
    let upload = match (upload_root, &stored.upload) {
        (Some(root), _) => Some(root.child(&meta.name)),
        (None, Some(url)) => Some(RemoteDir::parse(url).map_err(|e| {
            Failure::usage(format!(
                "error: the run's upload location `{url}` in {}: {e}\n  help: give --upload URL",
                dir.meta_file().display()
            ))
        })?),
        (None, None) => None,
    };
    if let (Some(now), Some(before)) = (&upload, &stored.upload)
        && now.to_string() != *before
    {
        resumed.note("--upload", &now.to_string(), before);
    }
    resumed.print();
    let plan = Plan {
        flow_path: PathBuf::from(&meta.flow),
        selections,
        data: PathBuf::from(data),
        mapping_args: meta.column_mapping.clone(),
        base_run: meta.base_run.as_ref().map(PathBuf::from),
        concurrency: concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1),
        line_timeout,
        dir,
        require_base_line: stored.require_base_line,
        sample: stored.sample,
        shard: meta.shard.as_ref().map(ShardInfo::shard),
        upload,
        init_args: stored.init.clone(),
        init_values: stored.init_values.clone(),
        resumed: Some(meta),
    };
    Ok((plan, model))
}

/// The settings of a run being resumed: each one as the run recorded it, unless given again
/// now, and a note for each given one that differs.
#[derive(Default)]
struct Resumed {
    notes: Vec<String>,
}

impl Resumed {
    fn note(&mut self, flag: &str, given: &str, recorded: &str) {
        self.notes.push(format!(
            "note: {flag} {given} overrides the run's setting, {recorded}"
        ));
    }

    /// `given` when given (noted when it differs from `recorded`), else `recorded`.
    fn pick<T: PartialEq>(
        &mut self,
        flag: &str,
        given: Option<T>,
        recorded: Option<T>,
        show: impl Fn(&T) -> String,
    ) -> Option<T> {
        match given {
            Some(given) => {
                if recorded.as_ref() != Some(&given) {
                    let was = recorded.as_ref().map_or_else(|| "none".to_string(), &show);
                    self.note(flag, &show(&given), &was);
                }
                Some(given)
            }
            None => recorded,
        }
    }

    /// A path flag: `given` when given, else the recorded (absolute) path.
    fn path(
        &mut self,
        flag: &str,
        given: Option<&Path>,
        recorded: Option<&str>,
    ) -> Option<PathBuf> {
        match given {
            Some(given) => {
                let now = absolute(given).display().to_string();
                if recorded != Some(now.as_str()) {
                    self.note(
                        flag,
                        &given.display().to_string(),
                        recorded.unwrap_or("none"),
                    );
                }
                Some(given.to_path_buf())
            }
            None => recorded.map(PathBuf::from),
        }
    }

    /// The model flags the run recorded, with those given now over them.
    fn model(&mut self, given: &ModelArgs, meta: &RunMeta) -> Result<ModelArgs, Failure> {
        let stored = &meta.settings;
        let mut model = given.clone();
        model.env_file = self.path(
            "--env-file",
            given.env_file.as_deref(),
            stored.env_file.as_deref(),
        );
        model.connections = self.path(
            "--connections",
            given.connections.as_deref(),
            stored.connections.as_deref(),
        );
        model.prices = self.path(
            "--prices",
            given.prices.as_deref(),
            stored.prices.as_deref(),
        );
        model.cache.cache_dir = self.path(
            "--cache-dir",
            given.cache.cache_dir.as_deref(),
            stored.cache_dir.as_deref(),
        );
        if given.offline && !meta.offline {
            self.note("--offline", "(the echo provider)", "model calls");
        }
        model.offline = given.offline || meta.offline;
        model.request_timeout = self
            .pick(
                "--request-timeout",
                given.request_timeout.map(Seconds::as_secs_f64),
                stored.request_timeout_s,
                f64::to_string,
            )
            .and_then(Seconds::new);
        model.max_retries = self.pick(
            "--max-retries",
            given.max_retries,
            stored.max_retries,
            u32::to_string,
        );
        let recorded_cache = match stored.cache.as_deref() {
            None => None,
            Some(name) => Some(CacheMode::from_name(name).ok_or_else(|| {
                Failure::usage(format!(
                    "error: {} records an unknown cache mode `{name}`\n  help: give --cache on, off or replay",
                    meta.name
                ))
            })?),
        };
        let given_cache = if given.cache.no_cache {
            Some(CacheMode::Off)
        } else {
            given.cache.cache
        };
        model.cache.no_cache = false;
        model.cache.cache = self.pick("--cache", given_cache, recorded_cache, |m| {
            m.as_str().to_string()
        });
        Ok(model)
    }

    fn print(&self) {
        for note in &self.notes {
            eprintln!("{note}");
        }
    }
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

/// The failure a finished batch reports, if any: the library's rule for a finished batch
/// (`eval::verdict::judge_batch`, shared with `flow eval`), as an exit status.
fn judge(meta: &RunMeta, outcome: &BatchOutcome, reporting: Reporting) -> Option<Failure> {
    use flow::eval::verdict::{FlowProblem, judge_batch};
    match judge_batch(
        meta,
        outcome,
        reporting.allow_failures,
        &format!("flow run --resume {}", meta.name),
    ) {
        Err(stop) => Some(super::common::stop_failure(&stop)),
        Ok(Some(FlowProblem::Aggregation(message))) => Some(Failure::quality(format!(
            "error: aggregation failed: {message}"
        ))),
        Ok(Some(problem)) => Some(Failure::quality(problem.to_string())),
        Ok(None) => None,
    }
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
            .and_then(|t| flow::non_finite::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null);
        let doc = serde_json::json!({"run": meta, "metrics": metrics, "path": dir.path});
        outln!(
            "{}",
            flow::non_finite::to_string_pretty(&doc).unwrap_or_default()
        );
    }
    super::batch_summary::print(meta, outcome, dir, elapsed, ran);
}
