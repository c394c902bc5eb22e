//! `flow eval --run RUN [EVAL_FLOW] [--evaluator SPEC ...]`: score a finished run with an
//! evaluation flow and/or built-in evaluators, gate on thresholds and a baseline, and write the
//! CI outputs (JUnit, Markdown summary, GitHub annotations).

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Map, Value};

use super::batch::{Plan, Reporting, run_plan};
use super::output::{Failure, bold, color_stderr};
use super::settings::{BatchOptions, Count, ModelArgs, NonNegative, OutputArgs, OutputFormat};
use flow::ci_report::{CaseResult, SummaryInput, github_annotations, junit_xml, markdown_summary};
use flow::data::ColumnMapping;
use flow::eval::ModelEvaluator;
use flow::evaluators::EvaluatorSpec;
use flow::gate::{GateResult, Threshold, check_baseline, check_thresholds};
use flow::run_store::{self, RunDir, RunMeta, RunStatus};

#[derive(Debug, Args)]
#[command(
    mut_arg("name", |a| a.help("The evaluation run's name (default: <run>_eval_<timestamp>)")),
    mut_arg("concurrency", |a| a.help("Evaluation-flow lines in flight at once")),
    mut_arg("line_timeout", |a| a.help("Fail an evaluation-flow line that runs longer than this many seconds"))
)]
pub struct EvalArgs {
    /// The run to evaluate (its name under .flow/runs, or its directory).
    #[arg(long = "run", value_name = "RUN")]
    pub run: String,
    /// An evaluation flow: an ordinary flow (usually with aggregation nodes and log_metric) run
    /// over the run's outputs joined by line number with the dataset.
    pub eval_flow: Option<PathBuf>,
    /// A built-in evaluator, NAME[:options] (repeatable): exact_match, contains, not_contains,
    /// regex, is_json, json_schema, numeric, f1, bleu, rouge_l, latency, tokens, cost.
    #[arg(long = "evaluator", value_name = "NAME[:OPTIONS]")]
    pub evaluators: Vec<String>,
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
    let project = std::env::current_dir().map_err(|e| Failure::usage(format!("error: {e}")))?;
    if args.eval_flow.is_none() && args.evaluators.is_empty() {
        return Err(Failure::usage(
            "error: nothing to evaluate with\n  help: give an evaluation flow (flow eval --run RUN flows/eval-accuracy) or --evaluator NAME",
        ));
    }
    let (model_specs, plain_specs): (Vec<&String>, Vec<&String>) =
        args.evaluators.iter().partition(|s| is_model_evaluator(s));
    let evaluators: Vec<EvaluatorSpec> = plain_specs
        .iter()
        .map(|s| {
            s.parse::<EvaluatorSpec>()
                .map_err(|e| Failure::usage(format!("error: --evaluator {s}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let model_evaluators = prepare_model_evaluators(&model_specs, &args.model, &project)?;
    let thresholds: Vec<Threshold> = args
        .thresholds
        .iter()
        .map(|s| {
            s.parse::<Threshold>()
                .map_err(|e| Failure::usage(format!("error: --threshold {s}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let base = super::runs::locate(&project, &args.run)?;
    let base_meta = base.read_meta().map_err(|e| {
        Failure::usage(format!(
            "error: cannot read {}: {e}",
            base.meta_file().display()
        ))
    })?;
    let baseline = match &args.baseline {
        Some(b) => Some(super::runs::locate(&project, b)?),
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
    if dir.path.exists() {
        return Err(Failure::usage(format!(
            "error: a run named `{name}` already exists at {}\n  help: pick another --name or `flow runs delete {name}`",
            dir.path.display()
        )));
    }

    // 1. The evaluation flow, as a batch over the base run.
    let mut failure: Option<Failure> = None;
    let mut meta = match &args.eval_flow {
        Some(flow_path) => {
            let plan = Plan {
                flow_path: flow_path.clone(),
                selections: Vec::new(),
                data: std::path::absolute(&data).unwrap_or(data.clone()),
                mapping_args: args.column_mapping.clone(),
                base_run: Some(base.path.clone()),
                dir: dir.clone(),
                resumed: None,
                concurrency: args.batch.concurrency(),
                line_timeout: args
                    .batch
                    .line_timeout
                    .map(super::settings::Seconds::as_secs_f64),
                require_base_line: true,
                sample: None,
                shard: None,
                upload: None,
            };
            let reporting = Reporting {
                output: OutputFormat::Text,
                allow_failures: false,
            };
            let finished = run_plan(&plan, &args.model, reporting)?;
            if let Some(f) = finished.failure {
                if f.class != flow::error::ErrorClass::Quality {
                    return Err(f);
                }
                failure = Some(f);
            }
            finished.meta
        }
        None => {
            std::fs::create_dir_all(&dir.path).map_err(|e| {
                Failure::usage(format!("error: cannot create {}: {e}", dir.path.display()))
            })?;
            flow::eval::builtin_only_meta(&name, &base, &base_meta, &data)
        }
    };

    // 2. Built-in evaluators.
    let mut builtin_cases: Vec<CaseResult> = Vec::new();
    let mut worst: Vec<(usize, String, String, f64)> = Vec::new();
    let mut failed_base_lines = 0;
    let mut tallies: std::collections::BTreeMap<(String, usize), (usize, usize)> =
        Default::default();
    let mut metrics: Map<String, Value> = flow::eval::read_metrics(&dir);
    if !evaluators.is_empty() {
        let outcome =
            flow::eval::score_into_dir(&dir, &base, &data, &mapping, &evaluators, |line| {
                for (evaluator, score) in &line.scores {
                    let t = tallies
                        .entry((evaluator.clone(), line.line_number))
                        .or_insert((0, 0));
                    t.0 += usize::from(score.passed);
                    t.1 += 1;
                    builtin_cases.push(CaseResult {
                        line_number: line.line_number,
                        evaluator: evaluator.clone(),
                        passed: score.passed,
                        score: score.score,
                        message: score.reason.clone(),
                        duration_s: 0.0,
                    });
                    if !score.passed {
                        worst.push((
                            line.line_number,
                            line.prediction.clone(),
                            format!("{evaluator}: {}", score.reason),
                            score.score.unwrap_or(f64::NEG_INFINITY),
                        ));
                    }
                }
            })
            .map_err(|e| Failure::usage(format!("error: {e}")))?;
        failed_base_lines = outcome.failed_base_lines;
        flow::eval::merge_metrics(&mut metrics, &outcome.metrics);
        if outcome.failed_base_lines > 0 && failure.is_none() {
            failure = Some(Failure::quality(format!(
                "{} line(s) of run `{}` failed; they count as failed evaluations",
                outcome.failed_base_lines, base_meta.name
            )));
        }
    }
    let mut repeat_gates: Vec<GateResult> = Vec::new();
    let repeat = args.repeat.get();
    if repeat > 1 {
        if evaluators.is_empty() {
            return Err(Failure::usage(
                "error: --repeat samples lines for built-in evaluators: add --evaluator NAME",
            ));
        }
        let k = args.require.map_or(repeat, Count::get);
        if k > repeat {
            return Err(Failure::usage(format!(
                "error: --require must be between 1 and --repeat ({repeat})"
            )));
        }
        for sample in 1..repeat {
            let sample_dir = RunDir::new(dir.path.join("samples").join(sample.to_string()));
            run_sample(&base_meta, &sample_dir, sample, &args)?;
            let file = std::fs::File::create(sample_dir.path.join("scores.jsonl"))
                .map_err(|e| Failure::usage(format!("error: cannot write scores: {e}")))?;
            let mut out = std::io::BufWriter::new(file);
            flow::eval::score_run(
                &sample_dir,
                &data,
                &mapping,
                &evaluators,
                &mut out,
                |line| {
                    for (evaluator, score) in &line.scores {
                        let t = tallies
                            .entry((evaluator.clone(), line.line_number))
                            .or_insert((0, 0));
                        t.0 += usize::from(score.passed);
                        t.1 += 1;
                    }
                },
            )
            .map_err(|e| Failure::usage(format!("error: sample {sample}: {e}")))?;
        }
        for e in &evaluators {
            let lines: Vec<flow::gate::LineTally> = tallies
                .iter()
                .filter(|((name, _), _)| name == &e.name)
                .map(|((_, n), (passes, samples))| flow::gate::LineTally {
                    line_number: *n,
                    passes: *passes,
                    samples: *samples,
                })
                .collect();
            let passing = lines
                .iter()
                .filter(|l| flow::gate::k_of_n(l.passes, l.samples, k as usize))
                .count();
            metrics.insert(
                format!("{}.k_of_n_pass_rate", e.name),
                Value::from(if lines.is_empty() {
                    0.0
                } else {
                    passing as f64 / lines.len() as f64
                }),
            );
            repeat_gates.push(flow::gate::check_repeats(&e.name, &lines, k as usize));
        }
    }
    if !model_evaluators.is_empty() {
        let lines = score_models(&base, &data, &mapping, &model_evaluators, &args, &project)?;
        for line in &lines {
            for (name, score, passed, reason) in &line.scores {
                builtin_cases.push(CaseResult {
                    line_number: line.line_number,
                    evaluator: name.clone(),
                    passed: *passed,
                    score: *score,
                    message: reason.clone(),
                    duration_s: 0.0,
                });
                if !passed {
                    worst.push((
                        line.line_number,
                        String::new(),
                        format!("{name}: {reason}"),
                        score.unwrap_or(f64::NEG_INFINITY),
                    ));
                }
            }
        }
        let model_metrics = flow::eval::record_model_scores(&dir, &lines, &model_evaluators)
            .map_err(|e| Failure::usage(format!("error: cannot write judge scores: {e}")))?;
        flow::eval::merge_metrics(&mut metrics, &model_metrics);
    }
    metrics.insert(
        "eval.base_failed_lines".into(),
        Value::from(failed_base_lines.max(base_meta.failed_lines)),
    );
    flow::eval::write_metrics(&dir, &metrics).map_err(|e| {
        Failure::usage(format!(
            "error: cannot write {}: {e}",
            dir.metrics_file().display()
        ))
    })?;

    // 3. Gates.
    let offline = base_meta.offline || meta.offline || args.model.offline;
    let mut gates: Vec<GateResult> = check_thresholds(&thresholds, &metrics);
    gates.extend(repeat_gates);
    let baseline_metrics = match &baseline {
        Some(b) => {
            let text = std::fs::read_to_string(b.metrics_file()).map_err(|e| {
                Failure::usage(format!(
                    "error: cannot read the baseline's metrics {}: {e}",
                    b.metrics_file().display()
                ))
            })?;
            let m: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
                Failure::usage(format!("error: {}: {e}", b.metrics_file().display()))
            })?;
            gates.extend(check_baseline(&metrics, &m, args.tolerance.get(), None));
            Some(m)
        }
        None => None,
    };
    if offline && !args.allow_offline && !gates.is_empty() {
        gates.push(GateResult {
            name: "real model answers".into(),
            passed: false,
            actual: None,
            expected: "answers from a model".into(),
            verdict: "FAIL the evaluated answers came from the offline echo provider, not a model (pass --allow-offline for a dry run)".into(),
        });
    }
    let gates_passed = gates.iter().all(|g| g.passed);

    // 4. Outputs.
    let color = color_stderr();
    for g in &gates {
        eprintln!(
            "{}",
            if g.passed {
                g.verdict.clone()
            } else {
                bold(&g.verdict, color)
            }
        );
    }
    let passed = gates_passed && failure.is_none();
    worst.sort_by(|a, b| a.3.total_cmp(&b.3));
    let summary_metrics: Vec<(String, f64, Option<f64>)> = metrics
        .iter()
        .filter(|(k, _)| {
            (!k.starts_with("flow.") || *k == "flow.success_rate") && !k.starts_with("eval.")
        })
        .filter_map(|(k, v)| {
            v.as_f64().map(|x| {
                (
                    k.clone(),
                    x,
                    baseline_metrics
                        .as_ref()
                        .and_then(|b| b.get(k))
                        .and_then(Value::as_f64),
                )
            })
        })
        .collect();
    if let Some(path) = &args.summary {
        let input = SummaryInput {
            title: format!("Evaluation of {}", base_meta.name),
            verdict_passed: passed,
            offline,
            gates: gates.clone(),
            metrics: summary_metrics,
            worst: worst
                .iter()
                .take(10)
                .map(|(n, p, why, _)| (*n, p.clone(), why.clone()))
                .collect(),
            failed_base_lines: failed_base_lines.max(base_meta.failed_lines),
            run_name: name.clone(),
            baseline_name: args.baseline.clone(),
        };
        append_or_write(path, &markdown_summary(&input))?;
    }
    let mut cases = builtin_cases;
    cases.extend(eval_flow_cases(&dir));
    if let Some(path) = &args.junit {
        create_parent(path)
            .and_then(|()| {
                std::fs::write(
                    path,
                    junit_xml(&format!("flow eval {}", base_meta.name), &cases, &gates),
                )
            })
            .map_err(|e| Failure::usage(format!("error: cannot write {}: {e}", path.display())))?;
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        for line in github_annotations(&gates, &cases) {
            outln!("{line}");
        }
    }
    meta.status = if passed {
        RunStatus::Completed
    } else {
        RunStatus::Failed
    };
    let _ = run_store::write_meta(&dir, &meta);
    if args.output.format == OutputFormat::Json {
        let doc = serde_json::json!({
            "passed": passed,
            "run": name,
            "base_run": base_meta.name,
            "metrics": metrics,
            "gates": gates.iter().map(|g| serde_json::json!({"name": g.name, "passed": g.passed, "verdict": g.verdict})).collect::<Vec<_>>(),
            "offline": offline,
        });
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    if !args.no_report {
        write_eval_reports(&dir, &base, &base_meta.name);
    }
    eprintln!(
        "{} evaluation {} · run {}",
        bold(if passed { "✓" } else { "✗" }, color),
        if passed { "passed" } else { "failed" },
        dir.path.display()
    );
    match failure {
        Some(f) => Err(f),
        None if !gates_passed => Err(Failure::quality(format!(
            "{} gate(s) failed",
            gates.iter().filter(|g| !g.passed).count()
        ))),
        None => Ok(()),
    }
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

/// Run the base run's flow again as repeated sample `sample`, into `dir`.
fn run_sample(
    base_meta: &RunMeta,
    dir: &RunDir,
    sample: u32,
    args: &EvalArgs,
) -> Result<(), Failure> {
    let Some(data) = &base_meta.data else {
        return Err(Failure::usage(
            "error: --repeat needs the run's dataset, and the run has none recorded",
        ));
    };
    if base_meta.flow.is_empty() {
        return Err(Failure::usage(
            "error: --repeat needs a run of a flow to sample again",
        ));
    }
    let plan = Plan {
        flow_path: PathBuf::from(&base_meta.flow),
        selections: base_meta
            .variants
            .iter()
            .map(|(node, vid)| flow::model::VariantSelection {
                node: node.clone(),
                variant_id: vid.clone(),
            })
            .collect(),
        data: PathBuf::from(data),
        mapping_args: base_meta.column_mapping.clone(),
        base_run: base_meta.base_run.as_ref().map(PathBuf::from),
        dir: dir.clone(),
        resumed: None,
        concurrency: args.batch.concurrency(),
        line_timeout: args
            .batch
            .line_timeout
            .map(super::settings::Seconds::as_secs_f64),
        require_base_line: false,
        sample: Some(sample),
        shard: None,
        upload: None,
    };
    eprintln!("sample {} of {}:", sample + 1, args.repeat.get());
    let reporting = Reporting {
        output: OutputFormat::Text,
        allow_failures: true,
    };
    match run_plan(&plan, &args.model, reporting)?.failure {
        Some(f) if f.class != flow::error::ErrorClass::Quality => Err(f),
        _ => Ok(()),
    }
}

/// Judges (`relevance:connection=...`, ...) and `embedding_similarity` call a model.
fn is_model_evaluator(spec: &str) -> bool {
    let name = spec.split(':').next().unwrap_or("").trim();
    name.parse::<flow::judge::Rubric>().is_ok() || name.starts_with("embedding")
}

fn prepare_model_evaluators(
    specs: &[&String],
    model: &ModelArgs,
    project: &Path,
) -> Result<Vec<ModelEvaluator>, Failure> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let env = flow::connection::EnvVars::load(model.env_file.as_deref(), project)
        .map_err(|e| Failure::usage(format!("error: {e}")))?;
    specs
        .iter()
        .map(|s| {
            let usage =
                |e: flow::judge::JudgeError| Failure::usage(format!("error: --evaluator {s}: {e}"));
            if s.starts_with("embedding") {
                let spec = s.parse::<flow::judge::EmbeddingSpec>().map_err(usage)?;
                flow::judge::EmbeddingJudge::new(spec, &env, model.offline)
                    .map(|j| ModelEvaluator::Embedding(Box::new(j)))
                    .map_err(usage)
            } else {
                let spec = s.parse::<flow::judge::JudgeSpec>().map_err(usage)?;
                flow::judge::Judge::new(spec, &env, model.offline)
                    .map(|j| ModelEvaluator::Judge(Box::new(j)))
                    .map_err(usage)
            }
        })
        .collect()
}

/// Run the model-based evaluators over the run; an unusable endpoint is exit 3.
fn score_models(
    base: &RunDir,
    data: &Path,
    mapping: &ColumnMapping,
    evaluators: &[ModelEvaluator],
    args: &EvalArgs,
    project: &Path,
) -> Result<Vec<flow::eval::ModelLine>, Failure> {
    let config = flow::provider::ClientConfig::for_requests(
        args.model.request_timeout(),
        args.model.retries(),
        args.batch.concurrency(),
    );
    let client = flow::provider::LlmClient::with_config(config)
        .map_err(|e| Failure::usage(format!("error: {e}")))?;
    let cache = match args.model.cache.mode() {
        flow::cache::CacheMode::Off => None,
        mode => Some(flow::cache::ResponseCache::new(
            args.model.cache.dir(project),
            mode,
        )),
    };
    let rt = super::runtime()?;
    rt.block_on(flow::eval::score_with_models(
        base,
        data,
        mapping,
        evaluators,
        &client,
        cache.as_ref(),
        args.batch.concurrency(),
    ))
    .map_err(|e| match e {
        flow::eval::JudgeErrorOrText::Judge(j) if j.endpoint_unusable() => {
            Failure::endpoint(format!("error: {j}"))
        }
        other => Failure::usage(format!("error: {other}")),
    })
}

/// One JUnit case per evaluation-flow line: it passed when the line succeeded.
fn eval_flow_cases(dir: &RunDir) -> Vec<CaseResult> {
    let Ok(journal) = run_store::read_journal(dir) else {
        return Vec::new();
    };
    let mut cases = Vec::new();
    let _ = journal.for_each(|line| {
        cases.push(CaseResult {
            line_number: line.line_number,
            evaluator: "evaluation flow".into(),
            passed: line.succeeded(),
            score: None,
            message: line.error.map(|e| e.message).unwrap_or_default(),
            duration_s: line.duration_ms / 1000.0,
        });
        Ok(())
    });
    cases
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
    result.map_err(|e| Failure::usage(format!("error: cannot write {}: {e}", path.display())))
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
