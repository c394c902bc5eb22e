//! `flow eval --run RUN [EVAL_FLOW] [--evaluator SPEC ...]`: score a finished run with an
//! evaluation flow and/or built-in evaluators, gate on thresholds and a baseline, and write the
//! CI outputs (JUnit, Markdown summary, GitHub annotations).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;

use super::common::{OutputFormat, executor_options, load_flow, prepare, run_settings};
use super::output::{Failure, bold, color_stderr, dim};
use super::progress::CliProgress;
use super::settings::{BatchOptions, Count, ModelArgs, NonNegative, OutputArgs, Seconds};
use flow::batch::{BatchConfig, DirRun, Progress};
use flow::ci_report::{SummaryInput, github_annotations, junit_xml, markdown_summary};
use flow::data::ColumnMapping;
use flow::eval::verdict::{FailReason, FlowProblem};
use flow::eval::{
    Baseline, EvalBatch, EvalError, EvalObserver, EvalOutcome, EvalPlan, GatePlan, ModelEvaluator,
    ModelSpec, Repeat, Verdict, evaluate, is_model_evaluator,
};
use flow::evaluators::EvaluatorSpec;
use flow::executor::{Executor, ExecutorOptions};
use flow::gate::Threshold;
use flow::provider::{ClientConfig, LlmClient};
use flow::record::LineResult;
use flow::run_store::{self, RunDir, RunMeta, RunSettings};
use flow::telemetry::{OtlpConfig, TracedProgress, Tracer};

#[derive(Debug, Args)]
#[command(
    mut_arg("name", |a| a.help("The evaluation run's name (default: <run>_eval_<timestamp>)")),
    mut_arg("concurrency", |a| a.help("Evaluation-flow lines in flight at once [default: 32]").long_help("Evaluation-flow lines in flight at once\n\n[default: 32]")),
    mut_arg("line_timeout", |a| a.help("Fail an evaluation-flow line that runs longer than this many seconds [default: 600]"))
)]
pub struct EvalArgs {
    /// The run to evaluate (its name under .flow/runs, or its directory).
    #[arg(long = "run", value_name = "RUN", required_unless_present = "resume")]
    pub run: Option<String>,
    /// Finish an evaluation that was stopped or killed: its command runs again, from the
    /// folder it ran in, with the lines its evaluation flow (and samples) already finished
    /// kept; then its scores, gates, verdict and reports are made. Given alone.
    #[arg(long, value_name = "EVAL_RUN", exclusive = true)]
    pub resume: Option<String>,
    /// An evaluation flow: an ordinary flow (usually with aggregation nodes and log_metric) run
    /// over the run's outputs joined by line number with the dataset.
    pub eval_flow: Option<PathBuf>,
    /// A built-in evaluator, NAME[:options] (repeatable): exact_match, contains, not_contains,
    /// regex, is_json, json_schema, numeric, f1, bleu, rouge_l, latency, tokens, cost.
    #[arg(long = "evaluator", value_name = "NAME[:OPTIONS]")]
    pub evaluators: Vec<String>,
    /// The evaluation flow's init, when it is a flex flow with a class entry: NAME=VALUE
    /// (repeatable) or a JSON file holding an object (as `pf run create --init`). The run's own
    /// flow, sampled again with --repeat, takes the init the run recorded.
    #[arg(long, value_name = "NAME=VALUE|FILE.json", num_args = 1.., requires = "eval_flow")]
    pub init: Vec<String>,
    /// The dataset [default: the run's].
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Map inputs: name='${data.col}' or name='${run.outputs.col}'; built-in evaluators read
    /// `prediction` (default: the run's only output) and `ground_truth` (default: that column).
    #[arg(long, value_name = "NAME=VALUE", num_args = 1..)]
    pub column_mapping: Vec<String>,
    /// A gate: METRIC>=VALUE (also >, <=, <, ==); repeatable.
    #[arg(long = "threshold", value_name = "GATE")]
    pub thresholds: Vec<String>,
    /// An earlier evaluation to compare with (e.g. the main branch's): a metric that regresses
    /// by more than --tolerance fails.
    #[arg(long, value_name = "EVAL_RUN")]
    pub baseline: Option<String>,
    /// How much worse than the baseline a metric may be (absolute).
    #[arg(long, value_name = "X", default_value = "0")]
    pub tolerance: NonNegative,
    /// Write JUnit XML: a test case per line and evaluator, and one per gate.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a Markdown summary (for a PR comment or $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Sample each line N times: the run counts as the first sample, and its flow runs N-1 more
    /// times (each sample a real request, cached by sample index). Built-in evaluators score
    /// every sample.
    #[arg(long, value_name = "N", default_value = "1")]
    pub repeat: Count<u32>,
    /// With --repeat: a line passes an evaluator when at least K of its N samples pass [default: N].
    #[arg(long, value_name = "K", requires = "repeat")]
    pub require: Option<Count<u32>>,
    /// Accept a verdict on answers from the offline echo provider (otherwise gates fail on them).
    #[arg(long)]
    pub allow_offline: bool,
    #[command(flatten)]
    pub batch: BatchOptions,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Do not write report.html, report.csv and report.wide.csv into the evaluation's directory.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: EvalArgs) -> Result<(), Failure> {
    let (args, resume) = match &args.resume {
        Some(name) => (resumed_args(name)?, true),
        None => (args, false),
    };
    let inputs = Inputs::from_args(&args, resume)?;
    let (base, base_name, dir) = (
        inputs.base.clone(),
        inputs.base_meta.name.clone(),
        inputs.dir.clone(),
    );
    let rt = super::runtime()?;
    let outcome = super::on_workers(&rt, inputs.evaluate())?;
    report(&args, &outcome, &base, &base_name, &dir)
}

/// Everything an evaluation needs, from the command line, owned (it runs on the runtime's
/// worker threads).
struct Inputs {
    base: RunDir,
    base_meta: RunMeta,
    dir: RunDir,
    data: PathBuf,
    mapping: ColumnMapping,
    mapping_args: Vec<String>,
    /// The evaluation flow, loaded, and how it runs (prepared on the runtime).
    eval_flow: Option<(flow::model::Flow, ExecutorOptions)>,
    builtin: Vec<EvaluatorSpec>,
    models: Vec<ModelEvaluator>,
    client: Option<LlmClient>,
    cache: Option<flow::cache::ResponseCache>,
    repeat: Option<Repeat>,
    gates: GatePlan,
    batch: BatchConfig,
    settings: RunSettings,
    offline: bool,
    model_concurrency: usize,
    /// Finish the earlier attempt in `dir` (`--resume`).
    resume: bool,
}

impl Inputs {
    /// Parse and check the command line, locate the runs, load the flows. Unless `resume`, the
    /// evaluation's directory is created and its command line recorded there (`flow eval
    /// --resume` runs it again).
    fn from_args(args: &EvalArgs, resume: bool) -> Result<Inputs, Failure> {
        let work = super::common::workdir()?;
        let project = work.root.clone();
        if args.eval_flow.is_none() && args.evaluators.is_empty() {
            return Err(eval_failure(EvalError::NothingToEvaluate));
        }
        let (model_specs, plain_specs): (Vec<&String>, Vec<&String>) =
            args.evaluators.iter().partition(|s| is_model_evaluator(s));
        let builtin: Vec<EvaluatorSpec> = plain_specs
            .iter()
            .map(|s| {
                s.parse::<EvaluatorSpec>()
                    .map_err(|e| Failure::usage(format!("error: --evaluator {s}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let model_evaluators = prepare_model_evaluators(&model_specs, &args.model, &work.cwd)?;
        let thresholds: Vec<Threshold> = args
            .thresholds
            .iter()
            .map(|s| {
                s.parse::<Threshold>()
                    .map_err(|e| Failure::usage(format!("error: --threshold {s}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        if let Some((i, t)) = thresholds
            .iter()
            .enumerate()
            .find(|(i, t)| thresholds[..*i].contains(t))
        {
            // the same gate twice would be counted (and reported) twice
            return Err(Failure::usage(format!(
                "error: --threshold {} is given twice (arguments {} and {} of --threshold): give each gate once",
                t,
                thresholds.iter().position(|o| o == t).map_or(0, |p| p + 1),
                i + 1
            )));
        }
        let Some(run) = &args.run else {
            return Err(Failure::usage("error: give the run to evaluate: --run RUN"));
        };
        let base = super::runs::locate(&project, run)?;
        let base_meta = base.read_meta().map_err(|e| {
            Failure::usage(format!(
                "error: cannot read {}: {e}",
                base.meta_file().display()
            ))
        })?;
        let baseline = match &args.baseline {
            Some(b) => {
                let dir = super::runs::locate(&project, b)?;
                Some(Baseline::read(b, &dir).map_err(eval_failure)?)
            }
            None => None,
        };
        let data = match (&args.data, &base_meta.data) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => PathBuf::from(d),
            (None, None) => {
                return Err(Failure::usage(format!(
                    "error: run `{}` has no dataset recorded\n  help: pass --data FILE",
                    base_meta.name
                )));
            }
        };
        let mapping = ColumnMapping::parse(&args.column_mapping)
            .map_err(|e| Failure::usage(format!("error: {e}")))?;
        let name = match &args.batch.name {
            Some(n) => n.clone(),
            None => format!("{}_eval_{}", base_meta.name, stamp()),
        };
        let dir = RunDir::new(run_store::runs_root(&project).join(&name));
        if !resume {
            if dir.path.exists() {
                return Err(Failure::usage(format!(
                    "error: a run named `{name}` already exists at {}\n  help: pick another --name or `flow runs delete {name}`",
                    dir.path.display()
                )));
            }
            record_command(&dir, &work.cwd, &name)?;
        }
        let concurrency = args.batch.concurrency();
        let line_timeout = args.batch.line_timeout.map(Seconds::duration);
        let eval_flow = match &args.eval_flow {
            Some(path) => {
                let mut flow = load_flow(path, &[])?;
                super::common::apply_init(&mut flow, &args.init)?;
                let options = batch_options(args, &flow)?;
                Some((flow, options))
            }
            None => None,
        };
        let samples = args.repeat.get();
        let repeat = if samples > 1 {
            let (flow_path, selections) = Repeat::flow_of(&base_meta).map_err(eval_failure)?;
            let mut flow = load_flow(&flow_path, &selections)?;
            super::common::apply_recorded_init(
                &mut flow,
                &base_meta.settings.init,
                &base_meta.settings.init_values,
            )?;
            let options = batch_options(args, &flow)?;
            Some(Repeat {
                samples,
                require: args.require.map_or(samples, Count::get),
                flow,
                options,
            })
        } else {
            None
        };
        let client = if model_evaluators.is_empty() {
            None
        } else {
            Some(model_client(args, concurrency)?)
        };
        let cache = match args.model.cache.mode() {
            flow::cache::CacheMode::Off => None,
            mode => Some(flow::cache::ResponseCache::new(
                args.model.cache.dir(&project),
                mode,
            )),
        };
        let settings = run_settings(
            &args.model,
            args.batch.line_timeout.map(Seconds::as_secs_f64),
        );
        let gates = GatePlan {
            thresholds,
            baseline,
            tolerance: args.tolerance.get(),
            allow_offline: args.allow_offline,
        };
        let batch = BatchConfig {
            concurrency,
            line_timeout,
            ..BatchConfig::default()
        };
        let offline = args.model.offline;
        let model_concurrency = concurrency;
        Ok(Inputs {
            base,
            base_meta,
            dir,
            data,
            mapping,
            mapping_args: args.column_mapping.clone(),
            eval_flow,
            builtin,
            models: model_evaluators,
            client,
            cache,
            repeat,
            gates,
            batch,
            settings,
            offline,
            model_concurrency,
            resume,
        })
    }

    /// Prepare the evaluation flow and evaluate, showing the batches; Ctrl-C stops them.
    async fn evaluate(self) -> Result<EvalOutcome, Failure> {
        let executor = match self.eval_flow {
            Some((flow, options)) => Some(prepare(flow, &options).await?),
            None => None,
        };
        let (cancel_tx, cancel) = watch::channel(false);
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = cancel_tx.send(true);
                // A second Ctrl-C while finishing up leaves at once.
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let printer = Printer::new(self.batch.concurrency);
        let finish_with = format!("flow eval --resume {}", self.dir.name());
        let plan = EvalPlan {
            base: self.base,
            base_meta: self.base_meta,
            dir: self.dir,
            data: self.data,
            mapping: self.mapping,
            mapping_args: self.mapping_args,
            flow: executor.as_ref(),
            builtin: self.builtin,
            models: &self.models,
            client: self.client.as_ref(),
            cache: self.cache.as_ref(),
            model_concurrency: self.model_concurrency,
            repeat: self.repeat,
            gates: self.gates,
            batch: self.batch,
            settings: self.settings,
            offline: self.offline,
            cancel,
            resume: self.resume,
            finish_with,
        };
        let outcome = evaluate(plan, &printer).await;
        ctrl_c.abort();
        printer.flush().await;
        if let Some(e) = &executor {
            e.shutdown().await;
        }
        outcome.map_err(eval_failure)
    }
}

/// The command line of `flow eval` as typed: the arguments after `eval` (an argument that is
/// not UTF-8 cannot be recorded: an error naming it).
fn typed_arguments() -> Result<Vec<String>, Failure> {
    std::env::args_os()
        .skip(1)
        .skip_while(|a| a != "eval" && a != "evaluate")
        .skip(1)
        .map(|a| {
            a.into_string().map_err(|a| {
                Failure::usage(format!(
                    "error: the argument {} is not UTF-8, so the evaluation cannot be recorded for --resume\n  help: rename the file or folder it names",
                    a.to_string_lossy()
                ))
            })
        })
        .collect()
}

/// Create the evaluation's directory and record how it was started (for `--resume`), with its
/// name made explicit.
fn record_command(dir: &RunDir, cwd: &Path, name: &str) -> Result<(), Failure> {
    let mut args = typed_arguments()?;
    if !args
        .iter()
        .any(|a| a == "--name" || a.starts_with("--name="))
    {
        args.extend(["--name".to_string(), name.to_string()]);
    }
    let record = flow::eval::eval_dir::CommandRecord {
        cwd: cwd.display().to_string(),
        args,
        flow_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    std::fs::create_dir_all(&dir.path)
        .and_then(|()| flow::eval::eval_dir::write_command(dir, &record))
        .map_err(|e| Failure::own_file("cannot record the evaluation in", &dir.path, &e))
}

/// The arguments of the evaluation `name` to resume, from the command it recorded; the
/// current directory becomes the one it ran in.
fn resumed_args(name: &str) -> Result<EvalArgs, Failure> {
    let project = super::common::workdir()?.root;
    let dir = super::runs::locate(&project, name)?;
    let record = flow::eval::eval_dir::read_command(&dir.path).map_err(|e| {
        Failure::usage(format!(
            "error: {} is not an evaluation `flow eval --resume` can finish ({e})\n  help: evaluate its run again with `flow eval --run RUN ...`",
            dir.path.display()
        ))
    })?;
    std::env::set_current_dir(&record.cwd).map_err(|e| {
        Failure::usage(format!(
            "error: evaluation `{}` ran in {}, which cannot be entered now: {e}",
            dir.name(),
            record.cwd
        ))
    })?;
    eprintln!(
        "resuming evaluation {} · flow eval {}",
        dir.name(),
        record.args.join(" ")
    );
    super::parse_eval(&record.args).map_err(|e| {
        Failure::usage(format!(
            "error: the recorded command of evaluation `{}` no longer parses: {e}",
            dir.name()
        ))
    })
}

/// Write the requested outputs of a finished evaluation, print it, and map its verdict to an
/// exit status.
fn report(
    args: &EvalArgs,
    outcome: &EvalOutcome,
    base: &RunDir,
    base_name: &str,
    dir: &RunDir,
) -> Result<(), Failure> {
    let color = color_stderr();
    // The metrics come first, always: with no gate they are all the evaluation says.
    let metrics = outcome.summary_metrics();
    if !metrics.is_empty() {
        eprintln!("metrics:");
        let width = metrics.iter().map(|(k, ..)| k.len()).max().unwrap_or(0);
        for (name, value, baseline) in &metrics {
            let shown = super::batch_summary::human_value(&flow::non_finite::number(*value));
            match baseline {
                Some(b) => eprintln!(
                    "  {name:<width$}  {shown}  {}",
                    dim(
                        &format!(
                            "(baseline {}, {})",
                            super::batch_summary::human_value(&flow::non_finite::number(*b)),
                            signed_delta(value - b)
                        ),
                        color
                    )
                ),
                None => eprintln!("  {name:<width$}  {shown}"),
            }
        }
    }
    if outcome.offline {
        eprintln!(
            "{}",
            dim(
                "offline: the evaluated answers came from the echo provider, not a model",
                color
            )
        );
    }
    for g in &outcome.gates {
        eprintln!(
            "{}",
            if g.passed {
                g.verdict.clone()
            } else {
                bold(&g.verdict, color)
            }
        );
    }
    let passed = outcome.verdict.passed();
    let name = &outcome.meta.name;
    if let Some(path) = &args.summary {
        let input = SummaryInput {
            title: format!("Evaluation of {base_name}"),
            verdict_passed: passed,
            offline: outcome.offline,
            gates: outcome.gates.clone(),
            metrics: outcome.summary_metrics(),
            worst: outcome
                .worst
                .iter()
                .take(10)
                .map(|w| (w.line_number, w.prediction.clone(), w.why.clone()))
                .collect(),
            failed_base_lines: outcome.failed_base_lines,
            run_name: name.clone(),
            baseline_name: args.baseline.clone(),
        };
        append_or_write(path, &markdown_summary(&input))?;
    }
    if let Some(path) = &args.junit {
        create_parent(path)
            .and_then(|()| {
                std::fs::write(
                    path,
                    junit_xml(
                        &format!("flow eval {base_name}"),
                        &outcome.cases,
                        &outcome.gates,
                    ),
                )
            })
            .map_err(|e| Failure::usage(format!("error: cannot write {}: {e}", path.display())))?;
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        for line in github_annotations(&outcome.gates, &outcome.cases) {
            outln!("{line}");
        }
    }
    if args.output.format == OutputFormat::Json {
        let doc = serde_json::json!({
            "passed": passed,
            "run": name,
            "base_run": base_name,
            "metrics": outcome.metrics,
            "gates": outcome.gates.iter().map(|g| serde_json::json!({"name": g.name, "passed": g.passed, "verdict": g.verdict})).collect::<Vec<_>>(),
            "offline": outcome.offline,
        });
        outln!(
            "{}",
            flow::non_finite::to_string_pretty(&doc).unwrap_or_default()
        );
    }
    if !args.no_report {
        write_eval_reports(dir, base, base_name);
    }
    let ungated = if passed && outcome.gates.is_empty() {
        " · no gate was set: every line ran and was scored, nothing else was checked (gate with --threshold or --baseline)"
    } else {
        ""
    };
    eprintln!(
        "{} evaluation {}{ungated} · run {}",
        bold(if passed { "✓" } else { "✗" }, color),
        if passed { "passed" } else { "failed" },
        dir.path.display()
    );
    verdict_failure(&outcome.verdict)
}
/// Write the evaluation's reports (HTML, long and wide CSV) into its directory and print their
/// paths. A report that cannot be written is a warning: the verdict stands.
fn write_eval_reports(dir: &RunDir, base: &RunDir, base_name: &str) {
    let source = flow::report::ReportSource {
        label: base_name.to_string(),
        run_dir: base.path.clone(),
        eval_dirs: vec![dir.path.clone()],
    };
    match flow::report::write_reports(&dir.path, &format!("Evaluation of {base_name}"), &[source]) {
        Ok(files) => eprintln!(
            "report: {} · {} · {}",
            files.html.display(),
            files.csv.display(),
            files.wide_csv.display()
        ),
        Err(e) => eprintln!("warning: the report was not written: {e}"),
    }
}

/// Model evaluators from their specs, bound to connections from `.env` and the environment.
fn prepare_model_evaluators(
    specs: &[&String],
    model: &ModelArgs,
    cwd: &Path,
) -> Result<Vec<ModelEvaluator>, Failure> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let env = flow::connection::EnvVars::load_with(
        model.env_file.as_deref(),
        model.connections.as_deref(),
        cwd,
    )
    .map_err(|e| Failure::usage(format!("error: {e}")))?;
    specs
        .iter()
        .map(|s| {
            s.parse::<ModelSpec>()
                .and_then(|spec| spec.prepare(&env, model.offline))
                .map_err(|e| Failure::usage(format!("error: --evaluator {s}: {e}")))
        })
        .collect()
}

/// The client model evaluators call through: the request timeout and retries of the command
/// line, `concurrency` requests in flight.
fn model_client(args: &EvalArgs, concurrency: usize) -> Result<LlmClient, Failure> {
    let config = ClientConfig::for_requests(
        args.model.request_timeout(),
        args.model.retries(),
        concurrency,
    );
    LlmClient::with_config(config).map_err(|e| Failure::of(&e))
}

/// How a batch of the evaluation (the evaluation flow, or the evaluated run's flow sampled
/// again) runs `flow`.
fn batch_options(args: &EvalArgs, flow: &flow::model::Flow) -> Result<ExecutorOptions, Failure> {
    let concurrency = args.batch.concurrency();
    let mut options = executor_options(&args.model, flow)?;
    options.python_workers = super::batch::python_workers(concurrency);
    options.max_in_flight = concurrency;
    Ok(options)
}

/// Shows the evaluation's batches as `flow run --data` shows a batch: a header, live progress,
/// the summary, and OpenTelemetry spans of their lines when OTLP export is configured.
struct Printer {
    concurrency: usize,
    color: bool,
    current: Mutex<Option<Arc<CliProgress>>>,
    tracers: Mutex<Vec<Tracer>>,
}

impl Printer {
    fn new(concurrency: usize) -> Self {
        Printer {
            concurrency,
            color: color_stderr(),
            current: Mutex::new(None),
            tracers: Mutex::new(Vec::new()),
        }
    }

    /// Send the spans still buffered.
    async fn flush(&self) {
        let tracers: Vec<Tracer> = match self.tracers.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        for t in tracers {
            t.flush(Duration::from_secs(5)).await;
        }
    }
}

/// One batch's lines: counted for the progress display, and traced.
struct BatchLines {
    progress: Arc<CliProgress>,
    tracer: Option<Tracer>,
    run: String,
}

impl Progress for BatchLines {
    fn line_finished(&self, line: &LineResult) {
        let traced = TracedProgress {
            inner: self.progress.as_ref(),
            tracer: self.tracer.clone(),
            run: self.run.clone(),
        };
        traced.line_finished(line);
    }

    fn lines_kept(&self, lines: usize) {
        self.progress.lines_kept(lines);
    }
}

impl EvalObserver for Printer {
    fn batch_started<'s>(
        &'s self,
        batch: EvalBatch,
        executor: &Executor,
        dir: &RunDir,
        lines: usize,
    ) -> Box<dyn Progress + 's> {
        if let EvalBatch::Sample { index, of } = batch {
            eprintln!("sample {} of {of}:", index + 1);
        }
        eprintln!(
            "{}",
            dim(
                &format!(
                    "run {} · {lines} lines · concurrency {}",
                    dir.name(),
                    self.concurrency
                ),
                self.color
            )
        );
        let progress = Arc::new(CliProgress::new(Some(lines), 0, self.color));
        if let Ok(mut current) = self.current.lock() {
            *current = Some(progress.clone());
        }
        let tracer = OtlpConfig::from_env().map(|c| {
            let flow_name = executor
                .flow()
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Tracer::start(c, &flow_name)
        });
        if let (Some(t), Ok(mut tracers)) = (&tracer, self.tracers.lock()) {
            tracers.push(t.clone());
        }
        Box::new(BatchLines {
            progress,
            tracer,
            run: dir.name(),
        })
    }

    fn batch_finished(
        &self,
        _batch: EvalBatch,
        executor: &Executor,
        dir: &RunDir,
        run: &DirRun,
        elapsed: Duration,
    ) {
        let progress = self.current.lock().ok().and_then(|mut c| c.take());
        let ran = progress.as_ref().map_or(0, |p| {
            p.finish();
            p.done()
        });
        super::batch_summary::print(&run.meta, &run.outcome, dir, elapsed, ran);
        if let Some(warning) = executor.cache().and_then(|c| c.write_warning()) {
            eprintln!("warning: {warning}");
        }
    }
}

/// The exit status and message of an evaluation that could not run or be recorded.
fn eval_failure(e: EvalError) -> Failure {
    match &e {
        EvalError::Stopped { stop, .. } => super::common::stop_failure(stop),
        EvalError::Prepare(diagnostics) => Failure::diagnostics(diagnostics),
        // Every other error says its class (configuration, endpoint, the tool's own files).
        e => Failure::of(e),
    }
}

/// A change from the baseline, signed and rounded for people.
fn signed_delta(delta: f64) -> String {
    let shown = super::batch_summary::human_value(&serde_json::json!(delta.abs()));
    if delta < 0.0 {
        format!("-{shown}")
    } else {
        format!("+{shown}")
    }
}

/// The exit status of a verdict: none when it passed, else 1 with what failed.
fn verdict_failure(verdict: &Verdict) -> Result<(), Failure> {
    match verdict {
        Verdict::Passed => Ok(()),
        Verdict::Failed(FailReason::EvaluationFlow(FlowProblem::Aggregation(message))) => Err(
            Failure::quality(format!("error: aggregation failed: {message}")),
        ),
        other => Err(Failure::quality(other.to_string())),
    }
}

/// `$GITHUB_STEP_SUMMARY` is appended to; any other file is written.
fn append_or_write(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let append = std::env::var_os("GITHUB_STEP_SUMMARY").is_some_and(|s| Path::new(&s) == path);
    let result = if append {
        create_parent(path).and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
        })
    } else {
        create_parent(path).and_then(|()| std::fs::write(path, text))
    };
    result.map_err(|e| Failure::own_file("cannot write", path, &e))
}

/// Creates the folder a file given on the command line goes in (`--junit out/junit.xml`).
fn create_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

fn stamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]_[hour][minute][second]_[subsecond digits:6]"
        ))
        .unwrap_or_default()
}
