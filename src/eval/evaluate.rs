//! [`evaluate`]: one evaluation of a finished run, end to end — the evaluation flow as a batch
//! over the run, built-in evaluators, repeated samples and their k-of-n tallies, model
//! evaluators, the metrics, the gates and the verdict — written into the evaluation directory.
//! `flow eval` and `flow experiment` both evaluate through it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::error::{EvalBatch, EvalError};
use super::eval_dir;
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
    /// Finish an earlier attempt in `dir` (`flow eval --resume`): the lines its evaluation flow
    /// and samples finished are kept; everything after them is made again.
    pub resume: bool,
    /// The command that finishes this evaluation when it stops (`flow eval --resume NAME`),
    /// for the messages.
    pub finish_with: String,
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

/// What the evaluators found, line by line.
#[derive(Default)]
struct Findings {
    cases: Vec<CaseResult>,
    worst: Vec<WorstLine>,
    tallies: Tallies,
    /// The lines scored, and those that could not be (for the `meta.json` of an evaluation
    /// without a flow).
    lines: BTreeSet<usize>,
    unscored: BTreeSet<usize>,
    /// Per model evaluator: the lines it was asked to score, and those it could not score
    /// although the run's line succeeded (its reply held no score).
    model_lines: BTreeMap<String, (usize, usize)>,
}

impl Findings {
    /// One line's built-in scores over the run itself.
    fn builtin_line(&mut self, line: &super::LineScore) {
        self.lines.insert(line.line_number);
        if line.base_error.is_some() {
            self.unscored.insert(line.line_number);
        }
        for (evaluator, score) in &line.scores {
            self.tallies
                .record(evaluator, line.line_number, score.passed);
            self.case(
                line.line_number,
                evaluator,
                score.score,
                score.passed,
                &score.reason,
                &line.prediction,
            );
        }
    }

    /// One line's model-based scores.
    fn model_line(&mut self, line: &super::ModelLine) {
        self.lines.insert(line.line_number);
        for (name, score, passed, reason) in &line.scores {
            let counts = self.model_lines.entry(name.clone()).or_default();
            counts.0 += 1;
            if score.is_none() {
                self.unscored.insert(line.line_number);
                if !line.base_failed {
                    counts.1 += 1;
                }
            }
            self.case(line.line_number, name, *score, *passed, reason, "");
        }
    }

    fn case(
        &mut self,
        line_number: usize,
        evaluator: &str,
        score: Option<f64>,
        passed: bool,
        reason: &str,
        prediction: &str,
    ) {
        self.cases.push(CaseResult {
            line_number,
            evaluator: evaluator.to_string(),
            passed,
            score,
            message: reason.to_string(),
            duration_s: 0.0,
        });
        if !passed {
            self.worst.push(WorstLine {
                line_number,
                prediction: prediction.to_string(),
                why: format!("{evaluator}: {reason}"),
                score,
            });
        }
    }
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
                resume: earlier_attempt(&plan, dir),
                // The caller's observer traces the lines (the CLI sends its spans).
                trace: None,
            };
            let done = run_batch(executor, &batch, EvalBatch::Flow, &plan, observer).await?;
            flow_problem = judge_batch(&done.meta, &done.outcome, false, &plan.finish_with)
                .map_err(|stop| EvalError::Stopped {
                    batch: EvalBatch::Flow,
                    stop: Box::new(stop),
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
    let mut found = Findings::default();
    let mut failed_base_lines = 0;
    if !plan.builtin.is_empty() {
        let outcome = super::score_into_dir(
            dir,
            &plan.base,
            &data,
            &plan.mapping,
            &plan.builtin,
            |line| found.builtin_line(line),
        )
        .map_err(|source| EvalError::Scoring {
            sample: None,
            source,
        })?;
        failed_base_lines = outcome.failed_base_lines;
        super::merge_metrics(&mut metrics, &outcome.metrics);
    }
    let mut repeat_gates = Vec::new();
    if let Some(repeat) = &plan.repeat {
        for sample in 1..repeat.samples {
            score_sample(&plan, repeat, sample, &mut found.tallies, observer).await?;
        }
        let names: Vec<String> = plan.builtin.iter().map(|e| e.name.clone()).collect();
        let (k_metrics, gates) = found
            .tallies
            .repeat_results(&names, repeat.require as usize);
        super::merge_metrics(&mut metrics, &k_metrics);
        repeat_gates = gates;
    }

    // 3. Model evaluators. When they cannot score, what the evaluation has is still recorded.
    let mut model_error = None;
    if !plan.models.is_empty() {
        match score_models(&plan, &data).await {
            Ok(lines) => {
                lines.iter().for_each(|line| found.model_line(line));
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
    // Offline answers are unscored by design: the offline gate speaks for them.
    let unscored: Vec<verdict::UnscoredLines> = if offline {
        Vec::new()
    } else {
        found
            .model_lines
            .iter()
            .filter(|(_, (_, unscored))| *unscored > 0)
            .map(|(name, (of, lines))| verdict::UnscoredLines {
                evaluator: name.clone(),
                lines: *lines,
                of: *of,
            })
            .collect()
    };
    let verdict = verdict::decide(
        flow_problem.as_ref(),
        scored_base_failures,
        &plan.base_meta.name,
        &unscored,
        &gates,
    );
    let Findings {
        mut cases,
        mut worst,
        lines,
        unscored,
        ..
    } = found;
    rank_worst(&mut worst);
    cases.extend(flow_cases(dir));

    // 5. The evaluation's record.
    if plan.flow.is_none() {
        meta.total_lines = lines.len();
        meta.failed_lines = unscored.len();
        meta.completed_lines = meta.total_lines.saturating_sub(meta.failed_lines);
        meta.end_time = Some(timestamp(SystemTime::now()));
    }
    meta.status = if verdict.passed() && model_error.is_none() {
        RunStatus::Completed
    } else {
        RunStatus::Failed
    };
    run_store::write_meta(dir, &meta).map_err(EvalError::io("write", dir.meta_file()))?;
    let record = eval_dir::VerdictRecord {
        passed: verdict.passed() && model_error.is_none(),
        verdict: verdict.to_string(),
        gates: gates.clone(),
    };
    eval_dir::write_verdict(dir, &record).map_err(EvalError::io(
        "write",
        dir.path.join(eval_dir::VERDICT_FILE),
    ))?;
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
/// The record of the batch an earlier attempt started in `dir`, when resuming and there is one.
fn earlier_attempt(plan: &EvalPlan<'_>, dir: &RunDir) -> Option<RunMeta> {
    if !plan.resume {
        return None;
    }
    dir.read_meta().ok()
}

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
        resume: earlier_attempt(plan, &sample_dir),
        trace: None,
    };
    let done = run_batch(&executor, &batch, which, plan, observer).await;
    executor.shutdown().await;
    let done = done?;
    judge_batch(&done.meta, &done.outcome, true, &plan.finish_with).map_err(|stop| {
        EvalError::Stopped {
            batch: which,
            stop: Box::new(stop),
        }
    })?;
    let scores = sample_dir.path.join(eval_dir::SCORES_FILE);
    let file = std::fs::File::create(&scores).map_err(EvalError::io("write", &scores))?;
    let mut out = std::io::BufWriter::new(file);
    super::score_run(
        &sample_dir,
        &plan.data,
        &plan.mapping,
        &plan.builtin,
        &mut out,
        &scores,
        |line| {
            for (evaluator, score) in &line.scores {
                tallies.record(evaluator, line.line_number, score.passed);
            }
        },
    )
    .map_err(|source| EvalError::Scoring {
        sample: Some(sample),
        source,
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
        return Err(EvalError::NoModelClient);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::verdict::{Baseline, FailReason, Inconclusive};
    use crate::record::LineResult;
    use crate::run_store::RunWriter;
    use serde_json::json;

    /// A finished run `main` of three lines answering `answers` (None: the line failed), over a
    /// dataset whose `ground_truth` is `a` on every line.
    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        base: RunDir,
        meta: RunMeta,
        data: PathBuf,
    }

    fn fixture(answers: &[Option<&str>], offline: bool) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let data = root.join("data.jsonl");
        let rows: String = answers
            .iter()
            .map(|_| "{\"ground_truth\": \"a\"}\n")
            .collect();
        std::fs::write(&data, rows).unwrap();
        let base = RunDir::new(root.join("runs").join("main"));
        std::fs::create_dir_all(&base.path).unwrap();
        let writer = RunWriter::start(&base, crate::image::MessageFormat::Basic).unwrap();
        for (n, answer) in answers.iter().enumerate() {
            let line: LineResult = serde_json::from_value(json!({
                "line_number": n,
                "status": if answer.is_some() { "Completed" } else { "Failed" },
                "inputs": {},
                "outputs": answer.map_or(json!({}), |a| json!({"answer": a})),
                "error": answer.is_none().then(|| json!({"kind": "provider", "message": "boom"})),
                "nodes": [],
                "start_time": "2026-12-06T00:00:00Z",
                "end_time": "2026-12-06T00:00:00Z",
                "duration_ms": 5.0,
                "tokens": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }))
            .unwrap();
            writer.line(line).unwrap();
        }
        writer.finish().unwrap();
        let mut meta: RunMeta = serde_json::from_value(json!({
            "name": "main", "flow": root.display().to_string(), "flow_name": "f",
            "variant": "default", "data": data.display().to_string(), "status": "Running",
            "created": "2026-12-06T00:00:00Z", "total_lines": answers.len(),
            "completed_lines": 0, "failed_lines": 0,
            "tokens": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "latency_ms": {"p50": 0.0, "p90": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0},
            "concurrency": 1, "offline": offline, "flow_version": "test",
        }))
        .unwrap();
        run_store::finalize(&base, &mut meta, &Map::new(), false).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            base,
            meta,
            data,
        }
    }

    fn plan<'a>(f: &Fixture, name: &str, evaluators: &[&str], gates: GatePlan) -> EvalPlan<'a> {
        let (_tx, cancel) = watch::channel(false);
        EvalPlan {
            base: f.base.clone(),
            base_meta: f.meta.clone(),
            dir: RunDir::new(f.root.join("runs").join(name)),
            data: f.data.clone(),
            mapping: ColumnMapping::default(),
            mapping_args: Vec::new(),
            flow: None,
            builtin: evaluators.iter().map(|e| e.parse().unwrap()).collect(),
            models: &[],
            client: None,
            cache: None,
            model_concurrency: 1,
            repeat: None,
            gates,
            batch: BatchConfig::default(),
            settings: RunSettings::default(),
            offline: false,
            cancel,
            resume: false,
            finish_with: "flow eval --resume e".into(),
        }
    }

    fn gated(threshold: &str) -> GatePlan {
        GatePlan {
            thresholds: vec![threshold.parse().unwrap()],
            ..GatePlan::default()
        }
    }

    #[tokio::test]
    async fn builtin_scores_metrics_gates_and_the_record_are_written() {
        let f = fixture(&[Some("a"), Some("b"), Some("a")], false);
        let p = plan(
            &f,
            "ev",
            &["exact_match"],
            gated("exact_match.pass_rate>=0.6"),
        );
        let dir = p.dir.clone();
        let outcome = evaluate(p, &Quiet).await.unwrap();
        assert_eq!(outcome.verdict, Verdict::Passed);
        let rate = outcome.metrics["exact_match.pass_rate"].as_f64().unwrap();
        assert!((rate - 2.0 / 3.0).abs() < 1e-6, "{rate}");
        assert_eq!(outcome.gates.len(), 1);
        assert!(outcome.gates[0].passed);
        assert_eq!(outcome.cases.len(), 3);
        assert_eq!(outcome.worst.len(), 1);
        assert_eq!(outcome.worst[0].line_number, 1);
        for file in [
            eval_dir::SCORES_FILE,
            eval_dir::EVALUATORS_FILE,
            "metrics.json",
        ] {
            assert!(dir.path.join(file).is_file(), "{file}");
        }
        let meta = dir.read_meta().unwrap();
        assert_eq!(meta.status, RunStatus::Completed);
        assert_eq!((meta.total_lines, meta.completed_lines), (3, 3));
        assert_eq!(meta, outcome.meta);

        let p = plan(
            &f,
            "ev2",
            &["exact_match"],
            gated("exact_match.pass_rate>=0.7"),
        );
        let outcome = evaluate(p, &Quiet).await.unwrap();
        assert_eq!(
            outcome.verdict,
            Verdict::Failed(FailReason::Gates { failed: 1 })
        );
        let meta = RunDir::new(f.root.join("runs/ev2")).read_meta().unwrap();
        assert_eq!(meta.status, RunStatus::Failed);
    }

    #[tokio::test]
    async fn failed_lines_of_the_run_fail_the_evaluation_whatever_the_gates() {
        let f = fixture(&[Some("a"), None, Some("a")], false);
        let p = plan(
            &f,
            "ev",
            &["exact_match"],
            gated("exact_match.pass_rate>=0"),
        );
        let outcome = evaluate(p, &Quiet).await.unwrap();
        assert_eq!(
            outcome.verdict,
            Verdict::Failed(FailReason::BaseLines {
                lines: 1,
                run: "main".into()
            })
        );
        assert_eq!(outcome.failed_base_lines, 1);
        assert_eq!(outcome.metrics["eval.base_failed_lines"], json!(1));
        assert_eq!(
            (outcome.meta.completed_lines, outcome.meta.failed_lines),
            (2, 1)
        );
        assert!(outcome.gates.iter().all(|g| g.passed));
    }

    #[tokio::test]
    async fn an_offline_run_is_inconclusive_unless_allowed() {
        let f = fixture(&[Some("a"), Some("a")], true);
        let p = plan(
            &f,
            "ev",
            &["exact_match"],
            gated("exact_match.pass_rate>=1"),
        );
        let outcome = evaluate(p, &Quiet).await.unwrap();
        assert!(outcome.offline);
        assert_eq!(
            outcome.verdict,
            Verdict::Inconclusive(Inconclusive::OfflineAnswers { failed_gates: 1 })
        );
        let allowed = GatePlan {
            allow_offline: true,
            ..gated("exact_match.pass_rate>=1")
        };
        let outcome = evaluate(plan(&f, "ev2", &["exact_match"], allowed), &Quiet)
            .await
            .unwrap();
        assert_eq!(outcome.verdict, Verdict::Passed);
    }

    #[tokio::test]
    async fn a_baseline_regression_beyond_the_tolerance_fails() {
        let f = fixture(&[Some("a"), Some("b")], false);
        let baseline = |tolerance: f64| GatePlan {
            baseline: Some(Baseline {
                name: "before".into(),
                metrics: json!({"exact_match.pass_rate": 0.75})
                    .as_object()
                    .cloned()
                    .unwrap(),
            }),
            tolerance,
            ..GatePlan::default()
        };
        let strict = evaluate(plan(&f, "ev", &["exact_match"], baseline(0.1)), &Quiet)
            .await
            .unwrap();
        assert!(!strict.verdict.passed());
        let shown = strict.summary_metrics();
        let rate = shown.iter().find(|m| m.0 == "exact_match.pass_rate");
        assert_eq!(
            rate,
            Some(&("exact_match.pass_rate".to_string(), 0.5, Some(0.75)))
        );
        let lenient = evaluate(plan(&f, "ev2", &["exact_match"], baseline(0.25)), &Quiet)
            .await
            .unwrap();
        assert!(lenient.verdict.passed(), "{:?}", lenient.gates);
    }

    #[tokio::test]
    async fn configuration_problems_stop_before_anything_is_written() {
        let f = fixture(&[Some("a")], false);
        let hello = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows/hello");
        let flow = crate::model::load(&hello, &[]).unwrap();
        let repeat = |samples, require| Repeat {
            samples,
            require,
            flow: flow.clone(),
            options: ExecutorOptions::new(crate::connection::EnvVars::default()),
        };
        let with_repeat = |evaluators: &[&str], r: Repeat| EvalPlan {
            repeat: Some(r),
            ..plan(&f, "ev", evaluators, GatePlan::default())
        };
        // (plan, the error expected)
        type Expected = fn(&EvalError) -> bool;
        let cases: Vec<(EvalPlan<'_>, Expected)> = vec![
            (plan(&f, "ev", &[], GatePlan::default()), |e| {
                matches!(e, EvalError::NothingToEvaluate)
            }),
            (
                plan(
                    &f,
                    "ev",
                    &["exact_match"],
                    GatePlan {
                        tolerance: -1.0,
                        ..GatePlan::default()
                    },
                ),
                |e| matches!(e, EvalError::BadTolerance),
            ),
            (with_repeat(&["exact_match"], repeat(2, 3)), |e| {
                matches!(
                    e,
                    EvalError::BadRequire {
                        require: 3,
                        repeat: 2
                    }
                )
            }),
            (with_repeat(&["exact_match"], repeat(3, 0)), |e| {
                matches!(e, EvalError::BadRequire { require: 0, .. })
            }),
        ];
        for (p, expected) in cases {
            let err = evaluate(p, &Quiet).await.err();
            assert!(err.as_ref().is_some_and(expected), "{err:?}");
            assert!(!f.root.join("runs/ev").exists(), "nothing is written");
        }
    }

    #[tokio::test]
    async fn judges_alone_also_count_failed_lines_of_the_run() {
        let f = fixture(&[Some("a"), None], false);
        let judge = "relevance:connection=judge"
            .parse::<crate::eval::ModelSpec>()
            .unwrap()
            .prepare(&crate::connection::EnvVars::default(), true)
            .unwrap();
        let models = [judge];
        let client = LlmClient::with_config(crate::provider::ClientConfig::default()).unwrap();
        let p = EvalPlan {
            models: &models,
            client: Some(&client),
            ..plan(&f, "ev", &[], GatePlan::default())
        };
        let dir = p.dir.clone();
        let outcome = evaluate(p, &Quiet).await.unwrap();
        assert_eq!(
            outcome.verdict,
            Verdict::Failed(FailReason::BaseLines {
                lines: 1,
                run: "main".into()
            })
        );
        assert_eq!(outcome.cases.len(), 2);
        assert!(
            outcome.cases.iter().all(|c| !c.passed),
            "offline judges never pass"
        );
        assert_eq!(outcome.meta.flow_name, "model evaluators");
        assert!(dir.path.join(eval_dir::JUDGE_SCORES_FILE).is_file());
        let described: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path.join(eval_dir::EVALUATORS_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(described[0]["evaluator"], "relevance");
    }

    #[tokio::test]
    async fn model_evaluators_without_a_client_are_refused() {
        let f = fixture(&[Some("a")], false);
        let judge = "relevance:connection=judge"
            .parse::<crate::eval::ModelSpec>()
            .unwrap()
            .prepare(&crate::connection::EnvVars::default(), true)
            .unwrap();
        let models = [judge];
        let p = EvalPlan {
            models: &models,
            ..plan(&f, "ev", &[], GatePlan::default())
        };
        let dir = p.dir.clone();
        let err = evaluate(p, &Quiet).await.err();
        assert!(matches!(err, Some(EvalError::NoModelClient)), "{err:?}");
        assert_eq!(
            dir.read_meta().unwrap().status,
            RunStatus::Failed,
            "what the evaluation has is recorded as failed"
        );
    }

    #[test]
    fn a_run_of_no_flow_or_no_data_cannot_be_sampled_again() {
        let f = fixture(&[Some("a")], false);
        assert!(Repeat::flow_of(&f.meta).is_ok());
        let no_data = RunMeta {
            data: None,
            ..f.meta.clone()
        };
        assert!(matches!(
            Repeat::flow_of(&no_data),
            Err(EvalError::RepeatNeedsData)
        ));
        let no_flow = RunMeta {
            flow: String::new(),
            ..f.meta.clone()
        };
        assert!(matches!(
            Repeat::flow_of(&no_flow),
            Err(EvalError::RepeatNeedsFlow)
        ));
    }
}
