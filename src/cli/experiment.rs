//! `flow experiment [FILE] [--env ENV] [--variants ...|--combinations [NODES]] [--max-runs N]`:
//! load the experiment (overlay, connection placeholders), plan the variant runs, run them all
//! through one engine, and print the comparison (written to `.flow/experiments/<name>/`).

use std::path::{Path, PathBuf};

use clap::Args;
use tokio::sync::watch;

use super::common::{executor_options, run_settings};
use super::output::{Failure, bold, color_stderr, dim};
use super::progress::CliProgress;
use super::settings::{
    BatchOptions, Count, ModelArgs, OutputArgs, OutputFormat, Seconds, SecondsOrOff,
};
use flow::experiment::{
    self, ExperimentError, FanOut, RunResult, RunnerConfig, Selection, ShardUpload, placeholder,
    runner, summary,
};

#[derive(Debug, Args)]
#[command(
    mut_arg("name", |a| a.help("The comparison directory's name under .flow/experiments (default: <experiment>_<timestamp>)")),
    mut_arg("concurrency", |a| a.help("Lines in flight at once, across all runs of the experiment together [default: 32]").long_help("Lines in flight at once, across all runs of the experiment together\n\n[default: 32]")),
    mut_arg("output", |a| a.help("How to print the result: text for people, or json (summary.json on stdout) for scripts"))
)]
pub struct ExperimentArgs {
    /// The experiment file (GenAIOps experiment.yaml shape) [default: ./experiment.yaml].
    pub file: Option<PathBuf>,
    /// Lay the overlay `experiment.<ENV>.yaml` over the file (e.g. pr, dev): each block it has
    /// (datasets, evaluators, connections, runtime, ...) replaces the base file's.
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Which variants run: `default`, `all` (each variant of each node, the others at their
    /// default), or variant ids, comma-separated or repeated: `classify.variant_1`,
    /// `summarize.variant_1+classify.variant_1`, `classify.temperature=0.7`
    /// [default: the file's `variants:`, else all].
    #[arg(long, value_name = "SPEC")]
    pub variants: Vec<String>,
    /// Run every combination (the cartesian product) of the choices of all nodes with variants
    /// or sweeps, or of the listed nodes only (`--combinations summarize,classify`).
    #[arg(long, value_name = "NODES", num_args = 0..=1, default_missing_value = "", conflicts_with = "variants")]
    pub combinations: Option<String>,
    /// Refuse to start when more than N runs are planned (exit 2).
    #[arg(long, value_name = "N")]
    pub max_runs: Option<usize>,
    /// Print the planned runs and stop.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub batch: BatchOptions,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Run only shard K of N of every (variant, dataset) run, without evaluations; merge with
    /// --merge-shards once every shard has run. Started again, a shard keeps its finished shard
    /// runs and resumes the others (only their missing and failed lines run).
    #[arg(
        long,
        value_name = "K/N",
        env = "FLOW_SHARD",
        conflicts_with = "merge_shards"
    )]
    pub shard: Option<String>,
    /// Run shard JOB_COMPLETION_INDEX+1 of N (a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "N", conflicts_with_all = ["shard", "merge_shards"])]
    pub shards: Option<Count>,
    /// Upload each shard run to URL/<run name>/ (s3://, az://, gs://) as soon as it ends, so
    /// shards on machines that share no disk can be merged with --merge-shards URL; a shard
    /// started again without its local runs takes them from URL (finished ones are kept,
    /// unfinished ones resumed).
    #[arg(long, value_name = "URL", conflicts_with = "merge_shards")]
    pub upload: Option<String>,
    /// With --upload: also upload what each running shard run has written every SECONDS, so
    /// a pod killed outright is retried from there (0: only when each run ends).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "60",
        requires = "upload"
    )]
    pub upload_every: SecondsOrOff,
    /// Merge every run from its shard runs in these folders (local, or s3:// az:// gs:// URLs
    /// that --upload wrote to) [default: .flow/runs], then evaluate and compare as usual.
    #[arg(long, value_name = "FOLDER", num_args = 0..)]
    pub merge_shards: Option<Vec<String>>,
    /// With --merge-shards: upload the result laid out as .flow/ — the comparison to
    /// URL/experiments/<name>/, the merged runs and their evaluation runs to URL/runs/ (s3://,
    /// az://, gs://).
    #[arg(long, value_name = "URL", requires = "merge_shards")]
    pub to: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// The exit status and message of an experiment that cannot run.
pub(super) fn experiment_failure(e: ExperimentError) -> Failure {
    match e {
        ExperimentError::File(f) => Failure::diagnostics(&f.diagnostics),
        ExperimentError::Flow(d) => Failure::diagnostics(&d),
        ExperimentError::Plan(p) => Failure::usage(format!("error: {p}\n  help: {}", p.help())),
        // Object storage that cannot be used is an unusable endpoint (exit 3): a Job retries.
        ExperimentError::Storage(e) => Failure::context("--upload", &e),
        other => Failure::of(&other),
    }
}

/// The `--variants` / `--combinations` selection, if given.
fn cli_selection(args: &ExperimentArgs) -> Option<Selection> {
    if let Some(nodes) = &args.combinations {
        let list: Vec<String> = nodes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        return Some(Selection::Combinations((!list.is_empty()).then_some(list)));
    }
    (!args.variants.is_empty()).then(|| Selection::parse(&args.variants))
}

fn stamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]_[hour][minute][second]_[subsecond digits:6]"
        ))
        .unwrap_or_default()
}

struct PrintRuns {
    color: bool,
}

impl runner::RunObserver for PrintRuns {
    fn run_finished(&self, r: &RunResult) {
        let ok = r.meta.failed_lines == 0 && r.evals.iter().all(|e| e.problem.is_none());
        let mut parts = vec![format!(
            "{}/{} lines",
            r.meta.completed_lines, r.meta.total_lines
        )];
        for e in &r.evals {
            for (k, v) in &e.metrics {
                if let Some(x) = v.as_f64() {
                    parts.push(format!("{k} {}", (x * 1000.0).round() / 1000.0));
                }
            }
        }
        if r.meta.cache_hits > 0 {
            parts.push(if r.meta.saved_usd > 0.0 {
                format!(
                    "{} cached (saved ${:.4})",
                    r.meta.cache_hits, r.meta.saved_usd
                )
            } else {
                format!("{} cached", r.meta.cache_hits)
            });
        }
        eprintln!(
            "{} {} · {}: {}",
            bold(if ok { "✓" } else { "✗" }, self.color),
            r.variant,
            r.dataset,
            parts.join(" · ")
        );
        for e in &r.evals {
            if let Some(p) = &e.problem {
                eprintln!("  {}: {p}", e.evaluator);
            }
        }
        for (line, e) in r.first_errors.iter().take(3) {
            eprintln!(
                "  line {line}: {}",
                e.message.lines().next().unwrap_or_default()
            );
        }
        if let Some(earlier) = &r.earlier {
            let from = if earlier.downloaded {
                " (downloaded from the upload location)"
            } else {
                ""
            };
            let what = if earlier.finished {
                format!("{} had finished{from}: kept", r.dir.name())
            } else {
                format!(
                    "resumed {}{from}: {} lines kept from the earlier attempt",
                    r.dir.name(),
                    earlier.kept_lines
                )
            };
            eprintln!("  {}", dim(&what, self.color));
        }
        match &r.upload {
            Some(ShardUpload::Uploaded { url, files }) => {
                eprintln!("  uploaded {} ({files} files) to {url}", r.dir.name());
            }
            Some(ShardUpload::UpToDate { url }) => eprintln!(
                "  {}",
                dim(
                    &format!("{url} is up to date: not uploaded again"),
                    self.color
                )
            ),
            Some(ShardUpload::Failed { url, error }) => {
                eprintln!("  cannot upload {} to {url}: {error}", r.dir.name());
            }
            None => {}
        }
    }
}

pub fn run(args: ExperimentArgs) -> Result<(), Failure> {
    let work = super::common::workdir()?;
    let project = work.root.clone();
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from("experiment.yaml"));
    if !file.is_file() {
        return Err(Failure::usage(format!(
            "error: no experiment file at {}\n  help: give its path (`flow experiment path/to/experiment.yaml`); see docs/experiments.md for the format",
            file.display()
        )));
    }
    let mut exp = experiment::load(&file, args.env.as_deref())
        .map_err(|e| Failure::diagnostics(&e.diagnostics))?;
    let color = color_stderr();
    if let Some(env) = &args.env {
        match &exp.overlay {
            Some(o) => eprintln!("{}", dim(&format!("overlay {}", o.display()), color)),
            None => eprintln!(
                "{}",
                dim(
                    &format!(
                        "no {} for --env {env}: using {} as it is",
                        experiment::overlay_path(&exp.file, env).display(),
                        exp.file.display()
                    ),
                    color
                )
            ),
        }
    }

    // Connections: `${x}` placeholders from the environment (and .env).
    let env = flow::connection::EnvVars::load_with(
        args.model.env_file.as_deref(),
        args.model.connections.as_deref(),
        &work.cwd,
    )
    .map_err(|e| Failure::usage(format!("error: {e}")))?;
    let lenient = args.model.offline || args.model.cache.mode() == flow::cache::CacheMode::Replay;
    let resolved = placeholder::resolve_connections(&exp.connections, &env, lenient)
        .map_err(|d| Failure::diagnostics(&d))?;
    // A class entry's `init.json` (the GenAIOps template's), where the file gives no `init:`.
    let notes = experiment::init_json::apply(
        &mut exp,
        &placeholder::apply_to_env(&env, &resolved),
        lenient,
    )
    .map_err(|d| Failure::diagnostics(&d))?;
    for note in notes {
        eprintln!("note: {note}");
    }

    let selection = experiment::effective_selection(&exp, cli_selection(&args));
    let variants = experiment::plan_variants(&exp, &selection).map_err(experiment_failure)?;
    let runs = variants.len() * exp.datasets.len();
    let evaluations: usize = exp
        .datasets
        .iter()
        .map(|d| exp.evaluations_of(&d.name).count())
        .sum::<usize>()
        * variants.len();
    eprintln!(
        "experiment {}: {} variant{} × {} dataset{} = {} run{}, {} evaluation{}",
        bold(&exp.name, color),
        variants.len(),
        plural(variants.len()),
        exp.datasets.len(),
        plural(exp.datasets.len()),
        runs,
        plural(runs),
        evaluations,
        plural(evaluations),
    );
    for v in &variants {
        eprintln!("  {}", v.plan.id);
    }
    if let Some(max) = args.max_runs {
        if runs > max {
            return Err(Failure::usage(format!(
                "error: {runs} runs are planned, more than --max-runs {max}\n  help: narrow the selection (--variants default, --variants <ids>, --combinations <nodes>) or raise --max-runs"
            )));
        }
    }
    if args.dry_run {
        return Ok(());
    }

    let hashes = experiment::compute_hashes(&exp, &variants).map_err(experiment_failure)?;
    let root = summary::experiments_root(&project);
    let stamp = stamp();
    let dir_name = match &args.batch.name {
        Some(n) if n.is_empty() || n.contains(['/', '\\']) || n == "." || n == ".." => {
            return Err(Failure::usage(format!(
                "error: `{n}` is not a valid experiment name (no slashes)"
            )));
        }
        Some(n) => n.clone(),
        None => format!("{}_{stamp}", runner::safe_name(&exp.name)),
    };
    let dir = root.join(&dir_name);
    if dir.exists() {
        return Err(Failure::usage(format!(
            "error: {} already exists\n  help: pick another --name",
            dir.display()
        )));
    }
    let to = match &args.to {
        Some(url) => Some(
            flow::run_store::remote::RemoteDir::parse(url)
                .map_err(|e| Failure::usage(format!("error: --to: {e}")))?,
        ),
        None => None,
    };
    let shard = super::batch::shard_from(args.shard.as_deref(), args.shards)?;
    let upload = match (&args.upload, shard) {
        (Some(url), Some(_)) => Some(
            flow::run_store::remote::RemoteDir::parse(url)
                .map_err(|e| Failure::usage(format!("error: --upload: {e}")))?,
        ),
        (Some(_), None) => {
            return Err(Failure::usage(
                "error: --upload goes with --shard K/N or --shards N (a whole experiment keeps its runs here)",
            ));
        }
        (None, _) => None,
    };
    // Remote shard folders are downloaded first and removed when the command ends.
    let downloads = super::merge::Downloads(
        std::env::temp_dir().join(format!("flow-experiment-{}-{dir_name}", std::process::id())),
    );
    let fan_out = match (&args.merge_shards, shard) {
        (Some(folders), _) if folders.is_empty() => {
            FanOut::Merge(vec![flow::run_store::runs_root(&project)])
        }
        (Some(folders), _) => {
            let mut local = Vec::with_capacity(folders.len());
            for (i, given) in folders.iter().enumerate() {
                if flow::run_store::remote::is_remote(given) {
                    let into = downloads.0.join(i.to_string());
                    let runs = super::runtime()?.block_on(super::merge::download(given, &into))?;
                    local.extend(
                        runs.iter()
                            .filter_map(|r| r.path.parent().map(Path::to_path_buf)),
                    );
                } else {
                    local.push(PathBuf::from(given));
                }
            }
            local.dedup();
            FanOut::Merge(local)
        }
        (None, Some(shard)) => FanOut::Shard(shard),
        (None, None) => FanOut::Whole,
    };
    let sharded = match &fan_out {
        FanOut::Shard(s) => Some(*s),
        _ => None,
    };
    let unchanged = match fan_out {
        FanOut::Whole => summary::unchanged_since(&project, &exp.name, &hashes, &dir),
        _ => None,
    };
    if let Some(prev) = &unchanged {
        let answers = match args.model.cache.mode() {
            flow::cache::CacheMode::Off => "--no-cache: every answer is asked for again",
            _ => "answers come from the response cache",
        };
        eprintln!(
            "unchanged since {}: same experiment file, datasets and flows ({answers})",
            prev.display()
        );
    }

    let Some(first) = variants.first() else {
        return Err(Failure::usage("error: no variant selected"));
    };
    let mut options = executor_options(&args.model, &first.flow)?;
    options.env = placeholder::apply_to_env(&options.env, &resolved);
    let line_timeout = args.batch.line_timeout.map(Seconds::duration);
    let upload_every = args.upload_every.duration();
    let config = RunnerConfig {
        project: project.clone(),
        concurrency: args.batch.concurrency(),
        line_timeout,
        settings: run_settings(
            &args.model,
            args.batch.line_timeout.map(Seconds::as_secs_f64),
        ),
        executor: options,
        stamp,
        experiment_dir: dir.clone(),
        fan_out: fan_out.clone(),
        upload,
        upload_every,
    };
    let total_lines: usize = match &fan_out {
        FanOut::Merge(_) => 0,
        _ => {
            exp.datasets
                .iter()
                .map(|d| {
                    let rows = flow::data::count_rows(&d.source).unwrap_or(0);
                    sharded.map_or(rows, |s| s.lines_of(rows))
                })
                .sum::<usize>()
                * variants.len()
        }
    };
    // A shard writes run directories only; the comparison comes with the merge.
    if sharded.is_none() {
        std::fs::create_dir_all(&dir).map_err(|e| Failure::own_file("cannot create", &dir, &e))?;
    }

    let rt = super::runtime()?;
    // Owned copies for the runtime's worker threads (see `on_workers`).
    let work = (
        exp.clone(),
        variants.clone(),
        hashes.datasets.clone(),
        hashes.experiment_digest(),
        config.clone(),
    );
    let results = super::on_workers(&rt, async move {
        let (exp, variants, datasets, digest, config) = work;
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = cancel_tx.send(true);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let progress = CliProgress::new(Some(total_lines), 0, color);
        let result = experiment::run_experiment(
            &exp,
            &variants,
            &datasets,
            &digest,
            &config,
            &progress,
            &PrintRuns { color },
            cancel_rx,
        )
        .await;
        progress.finish();
        ctrl_c.abort();
        Ok(result)
    })?;
    let results = results.map_err(experiment_failure)?;
    if let Some(shard) = sharded {
        let failed_uploads = results
            .iter()
            .filter(|r| matches!(r.upload, Some(ShardUpload::Failed { .. })))
            .count();
        // Object storage that cannot be written is an unusable endpoint (exit 3): a Job
        // retries the index, which keeps the runs that are there and resumes the others.
        if failed_uploads > 0 && !results.iter().any(|r| r.canceled) {
            return Err(Failure::endpoint(format!(
                "error: {failed_uploads} shard run(s) could not be uploaded (see above); the local run directories are kept"
            )));
        }
        eprintln!(
            "shard {shard} of {} runs done; when every shard has run: flow experiment {} --merge-shards",
            results.len(),
            file.display()
        );
        return verdict(&results);
    }

    let ids: Vec<String> = variants.iter().map(|v| v.plan.id.clone()).collect();
    let mut s = summary::build(
        &exp,
        args.env.as_deref(),
        &dir,
        &ids,
        &results,
        hashes,
        exp.extras.winner.as_ref(),
        args.model.offline,
    );
    s.unchanged_since = unchanged.map(|p| p.display().to_string());
    summary::write(&dir, &s).map_err(|e| Failure::own_file("cannot write", &dir, &e))?;
    write_reports(&dir, &s);
    if let Some(remote) = &to {
        upload_comparison(remote, &dir, &results)?;
    }

    if args.output.format == OutputFormat::Json {
        outln!(
            "{}",
            flow::non_finite::to_string_pretty(&s).unwrap_or_default()
        );
    } else {
        for line in summary::table(&s).lines() {
            outln!("{line}");
        }
    }
    // The table already says so; JSON output gets the note on stderr.
    if args.model.offline && args.output.format == OutputFormat::Json {
        eprintln!(
            "{}",
            dim(
                "offline: every model answer came from the echo provider, not a model",
                color
            )
        );
    }
    eprintln!("{}", dim(&format!("comparison {}", dir.display()), color));
    verdict(&results)
}

/// Upload a merged experiment laid out as `.flow/`: the comparison directory to
/// `experiments/<name>/`, each run and its evaluation runs to `runs/<run name>/` (so the paths
/// in `summary.json` hold there too). Storage that cannot be written is exit 3.
fn upload_comparison(
    remote: &flow::run_store::remote::RemoteDir,
    dir: &Path,
    results: &[RunResult],
) -> Result<(), Failure> {
    let rt = super::runtime()?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let runs = remote.child("runs");
    let mut uploads = vec![(remote.child("experiments").child(&name), dir.to_path_buf())];
    for r in results {
        uploads.push((runs.child(&r.dir.name()), r.dir.path.clone()));
        for e in &r.evals {
            uploads.push((runs.child(&e.dir.name()), e.dir.path.clone()));
        }
    }
    for (target, path) in &uploads {
        rt.block_on(target.upload(path)).map_err(|e| {
            Failure::endpoint(format!("error: cannot upload {}: {e}", path.display()))
        })?;
    }
    eprintln!(
        "uploaded the comparison {name} and {} run{} to {remote}",
        uploads.len() - 1,
        plural(uploads.len() - 1)
    );
    Ok(())
}

/// The experiment's exit status: 130 when stopped, 3 when the endpoint could not be used at
/// all, 1 when a line or an evaluation failed, else 0.
fn verdict(results: &[RunResult]) -> Result<(), Failure> {
    if results.iter().any(|r| r.canceled) {
        return Err(Failure::interrupted(
            "stopped: finished lines are kept in each run directory; run the experiment again to finish (finished lines come from the response cache; a shard resumes its shard runs)",
        ));
    }
    if !results.is_empty()
        && results
            .iter()
            .all(|r| r.endpoint_unusable.is_some() && r.meta.completed_lines == 0)
    {
        let why = results
            .iter()
            .find_map(|r| r.endpoint_unusable.as_ref())
            .map(|e| e.message.clone())
            .unwrap_or_default();
        return Err(Failure::endpoint(format!(
            "error: the endpoint could not be used: {why}"
        )));
    }
    // A judge (or embedding) endpoint that cannot be used makes every comparison meaningless.
    if let Some((r, e)) = results
        .iter()
        .flat_map(|r| r.evals.iter().map(move |e| (r, e)))
        .find(|(_, e)| e.endpoint_unusable)
    {
        return Err(Failure::endpoint(format!(
            "error: an evaluator's endpoint could not be used (run {}): {}",
            r.dir.name(),
            e.problem.as_deref().unwrap_or_default()
        )));
    }
    let failed_runs = results
        .iter()
        .filter(|r| r.meta.failed_lines > 0 || r.endpoint_unusable.is_some())
        .count();
    let failed_evals = results
        .iter()
        .flat_map(|r| &r.evals)
        .filter(|e| e.problem.is_some())
        .count();
    if failed_runs + failed_evals > 0 {
        return Err(Failure::quality(format!(
            "{failed_runs} run(s) had failed lines, {failed_evals} evaluation(s) failed"
        )));
    }
    Ok(())
}

/// Write the experiment's reports (report.html, report.csv, report.wide.csv) into its directory,
/// from the runs `summary.json` lists, and print their paths. A report that cannot be written is
/// a warning: the comparison and the exit status stand.
fn write_reports(dir: &Path, s: &flow::experiment::Summary) {
    use flow::report::{
        CsvOptions, LoadOptions, experiment_sources, load_report, write_report_files,
    };
    let written = experiment_sources(dir).and_then(|(sources, info)| {
        let options = LoadOptions {
            experiment: Some(info),
            ..LoadOptions::new(format!("Experiment {}", s.experiment))
        };
        let report = load_report(&sources, &options)?;
        write_report_files(dir, &report, CsvOptions::default())
    });
    match written {
        Ok(files) => eprintln!(
            "report: {} · {} · {}",
            files.html.display(),
            files.csv.display(),
            files.wide_csv.display()
        ),
        Err(e) => eprintln!("warning: cannot write the reports: {e}"),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
