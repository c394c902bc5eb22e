//! [`evaluate`]: one evaluation of a finished run, end to end — the evaluation flow as a batch
//! over the run, built-in evaluators, repeated samples and their k-of-n tallies, model
//! evaluators, the metrics, the gates and the verdict — written into the evaluation directory.
//! `flow eval` and `flow experiment` both evaluate through it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::error::{EvalBatch, EvalError};
use super::eval_dir;
use super::models::JudgeErrorOrText;
use super::models::{ModelEvaluator, score_with_models};
use super::verdict::{
    self, FlowProblem, GatePlan, Tallies, Verdict, WorstLine, judge_batch, rank_worst,
};
use crate::batch::{BatchConfig, DirBatch, DirRun, Progress, run_to_dir};
use crate::cache::ResponseCache;
use crate::ci_report::CaseResult;
use crate::data::ColumnMapping;
use crate::evaluators::EvaluatorSpec;
use crate::executor::{Executor, ExecutorOptions};
use crate::gate::GateResult;
use crate::model::{Flow, VariantSelection};
use crate::provider::LlmClient;
use crate::record::timestamp;
use crate::run_store::{self, RunDir, RunMeta, RunSettings, RunStatus};

/// What to evaluate, and how.
pub struct EvalPlan<'a> {
    /// The run evaluated, and its record.
    pub base: RunDir,
    pub base_meta: RunMeta,
    /// The evaluation's directory (created; it should not exist yet).
    pub dir: RunDir,
    /// The dataset the run's lines are joined with by line number.
    pub data: PathBuf,
    /// `--column-mapping`, parsed, and as written (recorded in `meta.json`).
    pub mapping: ColumnMapping,
    pub mapping_args: Vec<String>,
    /// The evaluation flow, prepared: run over the evaluated run, every line required to have
    /// succeeded in it.
    pub flow: Option<&'a Executor>,
    /// Built-in evaluators, scored line by line.
    pub builtin: Vec<EvaluatorSpec>,
    /// Evaluators that call a model (judges, embedding similarity).
    pub models: &'a [ModelEvaluator],
    /// The client and cache model evaluators call through, and how many lines they score at
    /// once.
    pub client: Option<&'a LlmClient>,
    pub cache: Option<&'a ResponseCache>,
    pub model_concurrency: usize,
    /// Sample every line several times (`--repeat N --require K`).
    pub repeat: Option<Repeat>,
    /// Thresholds, baseline and the offline rule.
    pub gates: GatePlan,
    /// How the evaluation flow's (and the samples') lines run.
    pub batch: BatchConfig,
    /// Recorded in the batches' `meta.json`.
    pub settings: RunSettings,
    /// Every model answer comes from the offline echo provider.
    pub offline: bool,
    /// Stops the batches (Ctrl-C).
    pub cancel: watch::Receiver<bool>,
}

/// `--repeat N --require K`: the evaluated run is sample 0; its flow runs `samples - 1` more
/// times (each sample's requests cached apart), built-in evaluators score every sample, and a
/// line passes an evaluator when at least `require` of its samples pass.
pub struct Repeat {
    pub samples: u32,
    pub require: u32,
    /// The evaluated run's flow, its variants applied (see [`Repeat::flow_of`]).
    pub flow: Flow,
    /// How that flow runs (`sample` is set for each sample).
    pub options: ExecutorOptions,
}

impl Repeat {
    /// The flow directory and variants to sample the run of `meta` with again: the run must be
    /// a run of a flow over a dataset.
    pub fn flow_of(meta: &RunMeta) -> Result<(PathBuf, Vec<VariantSelection>), EvalError> {
        if meta.data.is_none() {
            return Err(EvalError::RepeatNeedsData);
        }
        if meta.flow.is_empty() {
            return Err(EvalError::RepeatNeedsFlow);
        }
        let selections = meta
            .variants
            .iter()
            .map(|(node, vid)| VariantSelection {
                node: node.clone(),
                variant_id: vid.clone(),
            })
            .collect();
        Ok((PathBuf::from(&meta.flow), selections))
    }
}

/// Told about the batches an evaluation runs, for live output.
pub trait EvalObserver: Sync {
    /// `batch` starts: `lines` lines of `executor`'s flow into `dir`. Its lines are reported to
    /// the progress returned.
    fn batch_started<'s>(
        &'s self,
        batch: EvalBatch,
        executor: &Executor,
        dir: &RunDir,
        lines: usize,
    ) -> Box<dyn Progress + 's>;

    /// `batch` ended after `elapsed`, its run in `dir` (before it is judged).
    fn batch_finished(
        &self,
        batch: EvalBatch,
        executor: &Executor,
        dir: &RunDir,
        run: &DirRun,
        elapsed: Duration,
    );
}

/// An observer that shows nothing.
pub struct Quiet;

struct NoProgress;
impl Progress for NoProgress {
    fn line_finished(&self, _line: &crate::record::LineResult) {}
}

impl EvalObserver for Quiet {
    fn batch_started<'s>(
        &'s self,
        _batch: EvalBatch,
        _executor: &Executor,
        _dir: &RunDir,
        _lines: usize,
    ) -> Box<dyn Progress + 's> {
        Box::new(NoProgress)
    }

    fn batch_finished(&self, _: EvalBatch, _: &Executor, _: &RunDir, _: &DirRun, _: Duration) {}
}

/// What an evaluation found.
#[derive(Debug, Clone)]
pub struct EvalOutcome {
    /// The evaluation's record, as written to its `meta.json`.
    pub meta: RunMeta,
    /// Every metric, as written to its `metrics.json`.
    pub metrics: Map<String, Value>,
    /// Each gate with its value and verdict, in the order they are reported.
    pub gates: Vec<GateResult>,
    /// One case per line and evaluator (built-ins, model evaluators, then evaluation-flow
    /// lines), for JUnit and annotations.
    pub cases: Vec<CaseResult>,
    /// Failing lines, worst first.
    pub worst: Vec<WorstLine>,
    /// Lines the evaluated run failed on or never ran (they count as failures).
    pub failed_base_lines: usize,
    /// The answers came from the offline echo provider.
    pub offline: bool,
    /// The baseline's metrics, when there was one.
    pub baseline_metrics: Option<Map<String, Value>>,
    pub verdict: Verdict,
}

impl EvalOutcome {
    /// The metrics a summary shows, each with the baseline's value.
    pub fn summary_metrics(&self) -> Vec<(String, f64, Option<f64>)> {
        verdict::summary_metrics(&self.metrics, self.baseline_metrics.as_ref())
    }
}

/// The lines an evaluation without a flow scored, for its `meta.json`.
#[derive(Default)]
struct Scored {
    lines: BTreeSet<usize>,
    failed: BTreeSet<usize>,
}

/// Run the evaluation `plan` describes into `plan.dir` and judge it.
///
/// Errors are configuration problems found before anything runs, a batch that stopped early
/// (unusable endpoint, Ctrl-C), evaluators that could not score at all, and the evaluation's own
/// files that could not be written — the final `meta.json` included. A model evaluator that
/// fails still leaves the evaluation's `metrics.json` and a failed `meta.json` behind.
pub async fn evaluate(
    plan: EvalPlan<'_>,
    observer: &dyn EvalObserver,
) -> Result<EvalOutcome, EvalError> {
    check(&plan)?;
    let baseline_metrics = plan.gates.baseline.as_ref().map(|b| b.metrics.clone());
    let dir = &plan.dir;
    let data = std::path::absolute(&plan.data).unwrap_or_else(|_| plan.data.clone());

    // 1. The evaluation flow, as a batch over the base run.
    let mut flow_problem: Option<FlowProblem> = None;
    let mut meta = match plan.flow {
        Some(executor) => {
            let batch = DirBatch {
                dir: dir.clone(),
                data: data.clone(),
                mapping: plan.mapping.clone(),
                mapping_args: plan.mapping_args.clone(),
                base_run: Some(plan.base.path.clone()),
                require_base_line: true,
                config: plan.batch.clone(),
                settings: plan.settings.clone(),
                offline: plan.offline,
                shard: None,
                resume: None,
            };
            let done = run_batch(executor, &batch, EvalBatch::Flow, &plan, observer).await?;
            flow_problem = judge_batch(&done.meta, &done.outcome, false).map_err(|stop| {
                EvalError::Stopped {
                    batch: EvalBatch::Flow,
                    stop,
                }
            })?;
            done.meta
        }
        None => {
            std::fs::create_dir_all(&dir.path).map_err(EvalError::io("create", &dir.path))?;
            let mut meta =
                super::builtin_only_meta(&dir.name(), &plan.base, &plan.base_meta, &data);
            meta.column_mapping = plan.mapping_args.clone();
            if plan.builtin.is_empty() && !plan.models.is_empty() {
                meta.flow_name = "model evaluators".into();
            }
            meta
        }
    };

    // 2. Built-in evaluators, over the run and then over each repeated sample.
    let mut metrics = super::read_metrics(dir);
    let mut cases: Vec<CaseResult> = Vec::new();
    let mut worst: Vec<WorstLine> = Vec::new();
    let mut tallies = Tallies::default();
    let mut scored = Scored::default();
    let mut failed_base_lines = 0;
    if !plan.builtin.is_empty() {
        let outcome = super::score_into_dir(
            dir,
            &plan.base,
            &data,
            &plan.mapping,
            &plan.builtin,
            |line| {
                scored.lines.insert(line.line_number);
                if line.base_error.is_some() {
                    scored.failed.insert(line.line_number);
                }
                for (evaluator, score) in &line.scores {
                    tallies.record(evaluator, line.line_number, score.passed);
                    cases.push(CaseResult {
                        line_number: line.line_number,
                        evaluator: evaluator.clone(),
                        passed: score.passed,
                        score: score.score,
                        message: score.reason.clone(),
                        duration_s: 0.0,
                    });
                    if !score.passed {
                        worst.push(WorstLine {
                            line_number: line.line_number,
                            prediction: line.prediction.clone(),
                            why: format!("{evaluator}: {}", score.reason),
                            score: score.score,
                        });
                    }
                }
            },
        )
        .map_err(|message| EvalError::Scoring {
            sample: None,
            message,
        })?;
        failed_base_lines = outcome.failed_base_lines;
        super::merge_metrics(&mut metrics, &outcome.metrics);
    }
    let mut repeat_gates = Vec::new();
    if let Some(repeat) = &plan.repeat {
        for sample in 1..repeat.samples {
            score_sample(&plan, repeat, sample, &mut tallies, observer).await?;
        }
        let names: Vec<String> = plan.builtin.iter().map(|e| e.name.clone()).collect();
        let (k_metrics, gates) = tallies.repeat_results(&names, repeat.require as usize);
        super::merge_metrics(&mut metrics, &k_metrics);
        repeat_gates = gates;
    }

    // 3. Model evaluators. When they cannot score, what the evaluation has is still recorded.
    let mut model_error = None;
    if !plan.models.is_empty() {
        match score_models(&plan, &data).await {
            Ok(lines) => {
                for line in &lines {
                    scored.lines.insert(line.line_number);
                    for (name, score, passed, reason) in &line.scores {
                        if score.is_none() {
                            scored.failed.insert(line.line_number);
                        }
                        cases.push(CaseResult {
                            line_number: line.line_number,
                            evaluator: name.clone(),
                            passed: *passed,
                            score: *score,
                            message: reason.clone(),
                            duration_s: 0.0,
                        });
                        if !passed {
                            worst.push(WorstLine {
                                line_number: line.line_number,
                                prediction: String::new(),
                                why: format!("{name}: {reason}"),
                                score: *score,
                            });
                        }
                    }
                }
                let model_metrics = super::record_model_scores(dir, &lines).map_err(
                    EvalError::io("write", dir.path.join(eval_dir::JUDGE_SCORES_FILE)),
                )?;
                super::merge_metrics(&mut metrics, &model_metrics);
                if plan.builtin.is_empty() {
                    failed_base_lines = lines.iter().filter(|l| l.base_failed).count();
                }
            }
            Err(e) => model_error = Some(e),
        }
    }
    if !plan.builtin.is_empty() || !plan.models.is_empty() {
        eval_dir::write_evaluators(dir, &plan.builtin, plan.models).map_err(EvalError::io(
            "write",
            dir.path.join(eval_dir::EVALUATORS_FILE),
        ))?;
    }
    // The verdict counts the lines scoring found failed; the record, also those the run's
    // own record counts (a dataset given with --data may not hold them all).
    let scored_base_failures = failed_base_lines;
    let failed_base_lines = failed_base_lines.max(plan.base_meta.failed_lines);
    metrics.insert(
        "eval.base_failed_lines".into(),
        Value::from(failed_base_lines),
    );
    super::write_metrics(dir, &metrics).map_err(EvalError::io("write", dir.metrics_file()))?;

    // 4. Gates and the verdict.
    let offline = plan.base_meta.offline || meta.offline || plan.offline;
    let gates = verdict::check_gates(&plan.gates, &metrics, repeat_gates, offline);
    let verdict = verdict::decide(
        flow_problem.as_ref(),
        scored_base_failures,
        &plan.base_meta.name,
        &gates,
    );
    rank_worst(&mut worst);
    cases.extend(flow_cases(dir));

    // 5. The evaluation's record.
    if plan.flow.is_none() {
        meta.total_lines = scored.lines.len();
        meta.failed_lines = scored.failed.len();
        meta.completed_lines = meta.total_lines.saturating_sub(meta.failed_lines);
        meta.end_time = Some(timestamp(SystemTime::now()));
    }
    meta.status = if verdict.passed() && model_error.is_none() {
        RunStatus::Completed
    } else {
        RunStatus::Failed
    };
    run_store::write_meta(dir, &meta).map_err(EvalError::io("write", dir.meta_file()))?;
    if let Some(e) = model_error {
        return Err(e);
    }
    Ok(EvalOutcome {
        meta,
        metrics,
        gates,
        cases,
        worst,
        failed_base_lines,
        offline,
        baseline_metrics,
        verdict,
    })
}

/// Configuration problems, found before anything runs.
fn check(plan: &EvalPlan<'_>) -> Result<(), EvalError> {
    if plan.flow.is_none() && plan.builtin.is_empty() && plan.models.is_empty() {
        return Err(EvalError::NothingToEvaluate);
    }
    if !(plan.gates.tolerance >= 0.0 && plan.gates.tolerance.is_finite()) {
        return Err(EvalError::BadTolerance);
    }
    if let Some(r) = &plan.repeat {
        if plan.builtin.is_empty() {
            return Err(EvalError::RepeatWithoutEvaluators);
        }
        if r.require == 0 || r.require > r.samples {
            return Err(EvalError::BadRequire {
                require: r.require,
                repeat: r.samples,
            });
        }
    }
    Ok(())
}

/// Run one batch of the evaluation, telling the observer.
async fn run_batch(
    executor: &Executor,
    batch: &DirBatch,
    which: EvalBatch,
    plan: &EvalPlan<'_>,
    observer: &dyn EvalObserver,
) -> Result<DirRun, EvalError> {
    let lines = crate::data::count_rows(&batch.data).map_err(|e| EvalError::Batch {
        batch: which,
        source: crate::batch::DirBatchError::Data(e.to_string()),
    })?;
    let progress = observer.batch_started(which, executor, &batch.dir, lines);
    let started = Instant::now();
    let done = run_to_dir(executor, batch, progress.as_ref(), plan.cancel.clone())
        .await
        .map_err(|source| EvalError::Batch {
            batch: which,
            source,
        })?;
    drop(progress);
    observer.batch_finished(which, executor, &batch.dir, &done, started.elapsed());
    if let Some(message) = &done.data_error {
        return Err(EvalError::DataStopped {
            batch: which,
            message: message.clone(),
        });
    }
    Ok(done)
}

/// Run repeated sample `sample` of the evaluated run's flow and score it with the built-in
/// evaluators into its `scores.jsonl`, counting each line's passes in `tallies`. Failed lines
/// of a sample are scored as failures; a sample that stops early stops the evaluation.
async fn score_sample(
    plan: &EvalPlan<'_>,
    repeat: &Repeat,
    sample: u32,
    tallies: &mut Tallies,
    observer: &dyn EvalObserver,
) -> Result<(), EvalError> {
    let which = EvalBatch::Sample {
        index: sample,
        of: repeat.samples,
    };
    let meta = &plan.base_meta;
    let Some(data) = &meta.data else {
        return Err(EvalError::RepeatNeedsData);
    };
    let mapping = ColumnMapping::parse(&meta.column_mapping)
        .map_err(|e| EvalError::Mapping(e.to_string()))?;
    let sample_dir = eval_dir::sample_dir(&plan.dir, sample);
    let mut options = repeat.options.clone();
    options.sample = Some(sample);
    let (dag, _warnings) = crate::dag::build(&repeat.flow).map_err(EvalError::Prepare)?;
    let executor = Executor::new(repeat.flow.clone(), dag, &options)
        .await
        .map_err(|e| EvalError::Prepare(e.diagnostics))?;
    let batch = DirBatch {
        dir: sample_dir.clone(),
        data: PathBuf::from(data),
        mapping: mapping.clone(),
        mapping_args: meta.column_mapping.clone(),
        base_run: meta.base_run.as_ref().map(PathBuf::from),
        require_base_line: false,
        config: plan.batch.clone(),
        settings: plan.settings.clone(),
        offline: plan.offline,
        shard: None,
        resume: None,
    };
    let done = run_batch(&executor, &batch, which, plan, observer).await;
    executor.shutdown().await;
    let done = done?;
    judge_batch(&done.meta, &done.outcome, true)
        .map_err(|stop| EvalError::Stopped { batch: which, stop })?;
    let scores = sample_dir.path.join(eval_dir::SCORES_FILE);
    let file = std::fs::File::create(&scores).map_err(EvalError::io("write", &scores))?;
    let mut out = std::io::BufWriter::new(file);
    super::score_run(
        &sample_dir,
        &plan.data,
        &plan.mapping,
        &plan.builtin,
        &mut out,
        |line| {
            for (evaluator, score) in &line.scores {
                tallies.record(evaluator, line.line_number, score.passed);
            }
        },
    )
    .map_err(|message| EvalError::Scoring {
        sample: Some(sample),
        message,
    })?;
    std::io::Write::flush(&mut out).map_err(EvalError::io("write", &scores))?;
    Ok(())
}

/// Score every line with the model evaluators through the plan's client and cache.
async fn score_models(
    plan: &EvalPlan<'_>,
    data: &std::path::Path,
) -> Result<Vec<super::ModelLine>, EvalError> {
    let Some(client) = plan.client else {
        return Err(EvalError::Models(JudgeErrorOrText::Text(
            "model evaluators need a model client, and the evaluation was given none".into(),
        )));
    };
    score_with_models(
        &plan.base,
        data,
        &plan.mapping,
        plan.models,
        client,
        plan.cache,
        plan.model_concurrency,
    )
    .await
    .map_err(EvalError::Models)
}

/// One JUnit case per evaluation-flow line: it passed when the line succeeded.
fn flow_cases(dir: &RunDir) -> Vec<CaseResult> {
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
