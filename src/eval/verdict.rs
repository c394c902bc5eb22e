//! The gate contract of an evaluation, as pure functions over what the evaluation measured:
//! k-of-n tallies of repeated samples, the gates (thresholds, baseline, repeats, the offline
//! gate), the worst lines, and the verdict with its precedence. `evaluate` runs the evaluation
//! and calls these; they never touch files, so each rule is tested on its own.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::gate::{self, GateResult, LineTally, Threshold};
use crate::record::{ErrorInfo, ErrorKind};
use crate::run_store::RunMeta;

/// The name of the gate added when the evaluated answers came from the offline echo provider.
pub const OFFLINE_GATE: &str = "real model answers";

/// What an evaluation is gated on.
#[derive(Debug, Clone, Default)]
pub struct GatePlan {
    /// `--threshold` gates, checked in order.
    pub thresholds: Vec<Threshold>,
    /// An earlier evaluation to compare with: its name (for the summary) and its metrics.
    pub baseline: Option<Baseline>,
    /// How much worse than the baseline a metric may be (absolute, >= 0).
    pub tolerance: f64,
    /// Accept a verdict on answers from the offline echo provider.
    pub allow_offline: bool,
}

/// A baseline evaluation's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// How the user named it (`--baseline main-eval`).
    pub name: String,
    pub metrics: Map<String, Value>,
}

impl Baseline {
    /// The metrics of the evaluation in `dir`, which the user called `name`.
    pub fn read(name: &str, dir: &crate::run_store::RunDir) -> Result<Self, super::EvalError> {
        let path = dir.metrics_file();
        let bad = |message: String| super::EvalError::Baseline {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let metrics: Map<String, Value> =
            crate::non_finite::from_str(&text).map_err(|e| bad(e.to_string()))?;
        Ok(Baseline {
            name: name.to_string(),
            metrics,
        })
    }
}

/// Pass and sample counts per (evaluator, line) over the repeated samples of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tallies {
    counts: BTreeMap<(String, usize), (usize, usize)>,
}

impl Tallies {
    /// Count one sample of `line` scored by `evaluator`.
    pub fn record(&mut self, evaluator: &str, line: usize, passed: bool) {
        let t = self
            .counts
            .entry((evaluator.to_string(), line))
            .or_insert((0, 0));
        t.0 += usize::from(passed);
        t.1 += 1;
    }

    /// The tallies of `evaluator`'s lines, in line order.
    pub fn lines(&self, evaluator: &str) -> Vec<LineTally> {
        self.counts
            .iter()
            .filter(|((name, _), _)| name == evaluator)
            .map(|((_, n), (passes, samples))| LineTally {
                line_number: *n,
                passes: *passes,
                samples: *samples,
            })
            .collect()
    }

    /// For each evaluator: the metric `<evaluator>.k_of_n_pass_rate` (the share of lines that
    /// passed at least `k` of their samples; 0 without lines) and its repeat gate.
    pub fn repeat_results(
        &self,
        evaluators: &[String],
        k: usize,
    ) -> (Map<String, Value>, Vec<GateResult>) {
        let mut metrics = Map::new();
        let mut gates = Vec::new();
        for name in evaluators {
            let lines = self.lines(name);
            let passing = lines
                .iter()
                .filter(|l| gate::k_of_n(l.passes, l.samples, k))
                .count();
            let rate = if lines.is_empty() {
                0.0
            } else {
                passing as f64 / lines.len() as f64
            };
            metrics.insert(format!("{name}.k_of_n_pass_rate"), Value::from(rate));
            gates.push(gate::check_repeats(name, &lines, k));
        }
        (metrics, gates)
    }
}

/// Every gate of an evaluation, in the order they are reported: thresholds, repeat gates,
/// baseline comparisons, and — when the answers came from the offline echo provider and that
/// was not allowed — a failing gate that says so. Without any other gate there is no verdict to
/// protect, so no offline gate is added.
pub fn check_gates(
    plan: &GatePlan,
    metrics: &Map<String, Value>,
    repeat_gates: Vec<GateResult>,
    offline: bool,
) -> Vec<GateResult> {
    let mut gates = gate::check_thresholds(&plan.thresholds, metrics);
    gates.extend(repeat_gates);
    if let Some(b) = &plan.baseline {
        gates.extend(gate::check_baseline(
            metrics,
            &b.metrics,
            plan.tolerance,
            None,
        ));
    }
    if offline && !plan.allow_offline && !gates.is_empty() {
        gates.push(GateResult {
            name: OFFLINE_GATE.into(),
            passed: false,
            actual: None,
            expected: "answers from a model".into(),
            verdict: "FAIL the evaluated answers came from the offline echo provider, not a model (pass --allow-offline for a dry run)".into(),
        });
    }
    gates
}

/// A line that scored badly, for the summary's worst-lines table.
#[derive(Debug, Clone, PartialEq)]
pub struct WorstLine {
    pub line_number: usize,
    /// A preview of the prediction (empty for model evaluators).
    pub prediction: String,
    /// `<evaluator>: <reason>`.
    pub why: String,
    /// The score, when the evaluator gave one.
    pub score: Option<f64>,
}

/// Orders failing lines worst first: unscored lines (no score at all) first, then by score
/// ascending; ties keep the order they were found in.
pub fn rank_worst(lines: &mut [WorstLine]) {
    lines.sort_by(|a, b| {
        let key = |w: &WorstLine| w.score.unwrap_or(f64::NEG_INFINITY);
        key(a).total_cmp(&key(b))
    });
}

/// The metrics the summary shows, each with the baseline's value: numeric metrics only, and of
/// the evaluation run's own `flow.*` metrics only `flow.success_rate`; `eval.*` bookkeeping
/// never.
pub fn summary_metrics(
    metrics: &Map<String, Value>,
    baseline: Option<&Map<String, Value>>,
) -> Vec<(String, f64, Option<f64>)> {
    metrics
        .iter()
        .filter(|(k, _)| {
            (!k.starts_with("flow.") || *k == "flow.success_rate") && !k.starts_with("eval.")
        })
        .filter_map(|(k, v)| {
            crate::non_finite::as_f64(v).map(|x| {
                (
                    k.clone(),
                    x,
                    baseline
                        .and_then(|b| b.get(k))
                        .and_then(crate::non_finite::as_f64),
                )
            })
        })
        .collect()
}

/// Why a batch of the evaluation (its evaluation flow, or a repeated sample) stopped before
/// every line ran: the evaluation cannot go on.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchStop {
    /// The endpoint refused every request (key refused, unreachable) after `failed` lines.
    EndpointUnusable {
        failed: usize,
        error: Box<ErrorInfo>,
    },
    /// Stopped by Ctrl-C; `kept` lines are kept, and `resume` (a command) finishes the batch.
    Canceled { kept: usize, resume: String },
    /// Every line failed the same way (a template, an input, a connection) after `failed`
    /// lines: the flow or its settings are wrong.
    Misconfigured {
        failed: usize,
        error: Box<ErrorInfo>,
        resume: String,
    },
    /// Every line failed, and every error shown was the endpoint's.
    EveryLineEndpoint {
        failed: usize,
        total: usize,
        resume: String,
    },
}

/// What went wrong in a batch that ran to its end.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowProblem {
    /// An aggregation node failed.
    Aggregation(String),
    /// Some lines failed.
    LinesFailed {
        failed: usize,
        total: usize,
        /// The command that runs them again (`flow run --resume RUN`, `flow eval --resume
        /// EVAL`).
        resume: String,
    },
}

/// Judges a finished batch: `Err` when it stopped early (the evaluation cannot go on),
/// `Ok(Some)` when it finished with a failed aggregation or failed lines (a quality failure;
/// with `allow_failures`, failed lines count only when none succeeded). `resume` is the command
/// that finishes the batch, for the messages.
pub fn judge_batch(
    meta: &RunMeta,
    outcome: &crate::batch::BatchOutcome,
    allow_failures: bool,
    resume: &str,
) -> Result<Option<FlowProblem>, BatchStop> {
    if let Some(error) = &outcome.endpoint_unusable {
        return Err(BatchStop::EndpointUnusable {
            failed: outcome.failed,
            error: Box::new(error.clone()),
        });
    }
    if let Some(error) = &outcome.misconfigured {
        return Err(BatchStop::Misconfigured {
            failed: outcome.failed,
            error: Box::new(error.clone()),
            resume: resume.to_string(),
        });
    }
    if outcome.canceled {
        return Err(BatchStop::Canceled {
            kept: meta.completed_lines + meta.failed_lines,
            resume: resume.to_string(),
        });
    }
    if let Some(e) = outcome.aggregation.as_ref().and_then(|a| a.error.as_ref()) {
        return Ok(Some(FlowProblem::Aggregation(e.message.clone())));
    }
    if meta.failed_lines > 0 && !(allow_failures && meta.completed_lines > 0) {
        let all_endpoint = !outcome.first_errors.is_empty()
            && outcome
                .first_errors
                .iter()
                .all(|(_, e)| e.kind == ErrorKind::Endpoint);
        if meta.completed_lines == 0 && all_endpoint {
            return Err(BatchStop::EveryLineEndpoint {
                failed: meta.failed_lines,
                total: meta.total_lines,
                resume: resume.to_string(),
            });
        }
        return Ok(Some(FlowProblem::LinesFailed {
            failed: meta.failed_lines,
            total: meta.total_lines,
            resume: resume.to_string(),
        }));
    }
    Ok(None)
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every gate passed and no line failed.
    Passed,
    /// Lines failed or a gate failed.
    Failed(FailReason),
    /// The evaluation cannot speak for a model: its answers came from the offline echo provider
    /// and `--allow-offline` was not given. Gated evaluations fail on it, never pass silently.
    Inconclusive(Inconclusive),
}

/// Why an evaluation failed.
#[derive(Debug, Clone, PartialEq)]
pub enum FailReason {
    /// The evaluation flow's batch failed (lines or aggregation).
    EvaluationFlow(FlowProblem),
    /// `lines` lines of the evaluated run `run` failed or never ran; they count as failures.
    BaseLines { lines: usize, run: String },
    /// `failed` gates failed.
    Gates { failed: usize },
}

/// Why an evaluation is inconclusive.
#[derive(Debug, Clone, PartialEq)]
pub enum Inconclusive {
    /// The answers came from the offline echo provider; `failed_gates` gates failed, the
    /// offline gate among them.
    OfflineAnswers { failed_gates: usize },
    /// A model evaluator could not score some lines (its reply held no score): its metrics
    /// rest on the others alone, so no verdict is given on them.
    Unscored(Vec<UnscoredLines>),
}

/// Lines a model evaluator (a judge) could not score.
#[derive(Debug, Clone, PartialEq)]
pub struct UnscoredLines {
    /// The evaluator's name.
    pub evaluator: String,
    /// Lines it could not score.
    pub lines: usize,
    /// Lines it was asked to score.
    pub of: usize,
}

impl Verdict {
    /// Whether the evaluation passed.
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Passed)
    }
}

impl fmt::Display for FlowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowProblem::Aggregation(message) => write!(f, "aggregation failed: {message}"),
            FlowProblem::LinesFailed {
                failed,
                total,
                resume,
            } => write!(
                f,
                "{failed} of {total} lines failed. Rerun just those with: {resume}"
            ),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Passed => f.write_str("passed"),
            Verdict::Failed(FailReason::EvaluationFlow(p)) => p.fmt(f),
            Verdict::Failed(FailReason::BaseLines { lines, run }) => write!(
                f,
                "{lines} line(s) of run `{run}` failed; they count as failed evaluations"
            ),
            Verdict::Failed(FailReason::Gates { failed })
            | Verdict::Inconclusive(Inconclusive::OfflineAnswers {
                failed_gates: failed,
            }) => write!(f, "{failed} gate(s) failed"),
            Verdict::Inconclusive(Inconclusive::Unscored(list)) => {
                let each: Vec<String> = list
                    .iter()
                    .map(|u| {
                        format!(
                            "{} could not score {} of {} lines",
                            u.evaluator, u.lines, u.of
                        )
                    })
                    .collect();
                write!(
                    f,
                    "inconclusive: {} (their replies held no score; see judge_scores.jsonl): its metrics rest on the other lines alone",
                    each.join(", ")
                )
            }
        }
    }
}

/// The verdict, by precedence: a failed evaluation flow first, then failed lines of the
/// evaluated run (either makes every gate moot), then offline answers (a gated verdict on echo
/// text says nothing about a model), then lines a judge could not score (its metrics are not the
/// run's), then failed gates; otherwise passed.
pub fn decide(
    flow_problem: Option<&FlowProblem>,
    failed_base_lines: usize,
    base_run: &str,
    unscored: &[UnscoredLines],
    gates: &[GateResult],
) -> Verdict {
    if let Some(p) = flow_problem {
        return Verdict::Failed(FailReason::EvaluationFlow(p.clone()));
    }
    if failed_base_lines > 0 {
        return Verdict::Failed(FailReason::BaseLines {
            lines: failed_base_lines,
            run: base_run.to_string(),
        });
    }
    let failed = gates.iter().filter(|g| !g.passed).count();
    if gates.iter().any(|g| !g.passed && g.name == OFFLINE_GATE) {
        return Verdict::Inconclusive(Inconclusive::OfflineAnswers {
            failed_gates: failed,
        });
    }
    // A judge that could not score every line: the metrics a gate would read are not the
    // run's, so neither a pass nor a gate failure is claimed.
    if !unscored.is_empty() {
        return Verdict::Inconclusive(Inconclusive::Unscored(unscored.to_vec()));
    }
    if failed > 0 {
        return Verdict::Failed(FailReason::Gates { failed });
    }
    Verdict::Passed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::Threshold;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn threshold(s: &str) -> Threshold {
        s.parse().unwrap()
    }

    #[test]
    fn tallies_count_passes_and_samples_per_evaluator_and_line() {
        let mut t = Tallies::default();
        for (evaluator, line, passed) in [
            ("exact_match", 0, true),
            ("exact_match", 0, false),
            ("exact_match", 0, true),
            ("exact_match", 1, false),
            ("exact_match", 1, false),
            ("exact_match", 1, true),
            ("contains", 0, true),
        ] {
            t.record(evaluator, line, passed);
        }
        let lines = t.lines("exact_match");
        assert_eq!(
            lines,
            vec![
                LineTally {
                    line_number: 0,
                    passes: 2,
                    samples: 3
                },
                LineTally {
                    line_number: 1,
                    passes: 1,
                    samples: 3
                },
            ]
        );
        assert_eq!(t.lines("contains").len(), 1);
        assert!(t.lines("f1").is_empty());
    }

    #[test]
    fn k_of_n_rates_and_gates_follow_the_required_passes() {
        let mut t = Tallies::default();
        // line 0 passes 3/3, line 1 passes 2/3, line 2 passes 0/3.
        for (line, passes) in [(0, 3), (1, 2), (2, 0)] {
            for i in 0..3 {
                t.record("em", line, i < passes);
            }
        }
        // (k, expected pass rate, gate passes)
        let cases = [
            (1, 2.0 / 3.0, false),
            (2, 2.0 / 3.0, false),
            (3, 1.0 / 3.0, false),
        ];
        for (k, rate, passed) in cases {
            let (metrics, gates) = t.repeat_results(&["em".to_string()], k);
            let got = metrics["em.k_of_n_pass_rate"].as_f64().unwrap();
            assert!((got - rate).abs() < 1e-12, "k={k}: {got} != {rate}");
            assert_eq!(gates.len(), 1);
            assert_eq!(gates[0].passed, passed, "k={k}: {}", gates[0].verdict);
        }
        let mut all = Tallies::default();
        for line in 0..2 {
            all.record("em", line, true);
            all.record("em", line, false);
        }
        let (_, gates) = all.repeat_results(&["em".to_string()], 1);
        assert!(gates[0].passed, "{}", gates[0].verdict);
        let (_, gates) = all.repeat_results(&["em".to_string()], 2);
        assert!(!gates[0].passed, "{}", gates[0].verdict);
    }

    #[test]
    fn an_evaluator_without_lines_has_a_zero_k_of_n_rate() {
        let (metrics, _) = Tallies::default().repeat_results(&["em".to_string()], 1);
        assert_eq!(metrics["em.k_of_n_pass_rate"], json!(0.0));
    }

    #[test]
    fn thresholds_hold_or_fail_for_each_comparison() {
        let metrics = map(json!({"accuracy": 0.8, "latency": 120, "ok": true, "label": "x"}));
        // (threshold, passes)
        let cases = [
            ("accuracy>=0.8", true),
            ("accuracy>=0.81", false),
            ("accuracy>0.8", false),
            ("accuracy>0.79", true),
            ("accuracy<=0.8", true),
            ("accuracy<0.8", false),
            ("accuracy==0.8", true),
            ("accuracy==0.7", false),
            ("latency<200", true),
            ("ok==1", true),
            ("missing>=0.5", false),
            ("label>=0", false),
        ];
        for (text, passes) in cases {
            let plan = GatePlan {
                thresholds: vec![threshold(text)],
                ..GatePlan::default()
            };
            let gates = check_gates(&plan, &metrics, Vec::new(), false);
            assert_eq!(gates.len(), 1, "{text}");
            assert_eq!(gates[0].passed, passes, "{text}: {}", gates[0].verdict);
        }
    }

    #[test]
    fn a_missing_metric_fails_and_says_which_metrics_exist() {
        let plan = GatePlan {
            thresholds: vec![threshold("acuracy>=0.5")],
            ..GatePlan::default()
        };
        let gates = check_gates(&plan, &map(json!({"accuracy": 0.9})), Vec::new(), false);
        assert!(!gates[0].passed);
        assert_eq!(gates[0].actual, None);
        assert!(gates[0].verdict.contains("missing"), "{}", gates[0].verdict);
        assert!(
            gates[0].verdict.contains("accuracy"),
            "{}",
            gates[0].verdict
        );
    }

    #[test]
    fn baseline_gates_use_tolerance_and_the_metric_direction() {
        let baseline = map(json!({"accuracy": 0.80, "latency_ms": 100.0, "flow.tokens": 10}));
        // (current accuracy, current latency, tolerance, accuracy passes, latency passes)
        let cases = [
            (0.80, 100.0, 0.0, true, true),
            (0.79, 100.0, 0.0, false, true),
            (0.79, 100.0, 0.01, true, true),
            (0.78, 100.0, 0.01, false, true),
            (0.90, 101.0, 0.0, true, false),
            (0.90, 101.0, 1.0, true, true),
            (0.90, 90.0, 0.0, true, true),
        ];
        for (acc, lat, tolerance, acc_ok, lat_ok) in cases {
            let plan = GatePlan {
                baseline: Some(Baseline {
                    name: "main".into(),
                    metrics: baseline.clone(),
                }),
                tolerance,
                ..GatePlan::default()
            };
            let current = map(json!({"accuracy": acc, "latency_ms": lat, "flow.tokens": 99}));
            let gates = check_gates(&plan, &current, Vec::new(), false);
            let names: Vec<&str> = gates.iter().map(|g| g.name.as_str()).collect();
            assert_eq!(
                names,
                ["accuracy vs baseline", "latency_ms vs baseline"],
                "flow.* metrics are not compared"
            );
            assert_eq!(gates[0].passed, acc_ok, "{}", gates[0].verdict);
            assert_eq!(gates[1].passed, lat_ok, "{}", gates[1].verdict);
        }
    }

    #[test]
    fn a_metric_the_baseline_had_and_this_run_lacks_fails() {
        let plan = GatePlan {
            baseline: Some(Baseline {
                name: "main".into(),
                metrics: map(json!({"f1.mean": 0.5})),
            }),
            ..GatePlan::default()
        };
        let gates = check_gates(&plan, &Map::new(), Vec::new(), false);
        assert_eq!(gates.len(), 1);
        assert!(!gates[0].passed);
    }

    #[test]
    fn offline_answers_fail_gated_evaluations_unless_allowed() {
        let metrics = map(json!({"accuracy": 1.0}));
        let gated = GatePlan {
            thresholds: vec![threshold("accuracy>=0.5")],
            ..GatePlan::default()
        };
        let allowed = GatePlan {
            allow_offline: true,
            ..gated.clone()
        };
        let online = check_gates(&gated, &metrics, Vec::new(), false);
        assert_eq!(online.len(), 1);
        assert_eq!(decide(None, 0, "r", &[], &online), Verdict::Passed);

        let offline = check_gates(&gated, &metrics, Vec::new(), true);
        assert_eq!(offline.len(), 2);
        assert_eq!(offline[1].name, OFFLINE_GATE);
        assert!(!offline[1].passed);
        let verdict = decide(None, 0, "r", &[], &offline);
        assert_eq!(
            verdict,
            Verdict::Inconclusive(Inconclusive::OfflineAnswers { failed_gates: 1 })
        );
        assert!(!verdict.passed(), "offline answers never pass silently");

        let dry_run = check_gates(&allowed, &metrics, Vec::new(), true);
        assert_eq!(dry_run.len(), 1);
        assert_eq!(decide(None, 0, "r", &[], &dry_run), Verdict::Passed);

        // No gate, no verdict to protect: nothing is added.
        let ungated = check_gates(&GatePlan::default(), &metrics, Vec::new(), true);
        assert!(ungated.is_empty());
        // A repeat gate is a gate too.
        let repeat = check_gates(
            &GatePlan::default(),
            &metrics,
            vec![gate::check_repeats("em", &[], 1)],
            true,
        );
        assert_eq!(repeat.last().map(|g| g.name.as_str()), Some(OFFLINE_GATE));
    }

    #[test]
    fn worst_lines_rank_unscored_first_then_by_score_keeping_ties_in_order() {
        let line = |n: usize, score: Option<f64>| WorstLine {
            line_number: n,
            prediction: String::new(),
            why: format!("line {n}"),
            score,
        };
        let mut lines = vec![
            line(0, Some(0.5)),
            line(1, None),
            line(2, Some(0.1)),
            line(3, Some(0.5)),
            line(4, None),
            line(5, Some(-1.0)),
        ];
        rank_worst(&mut lines);
        let order: Vec<usize> = lines.iter().map(|l| l.line_number).collect();
        assert_eq!(order, [1, 4, 5, 2, 0, 3]);
    }

    #[test]
    fn summary_metrics_drop_bookkeeping_and_pair_with_the_baseline() {
        let metrics = map(json!({
            "accuracy": 0.9, "flow.success_rate": 1.0, "flow.tokens": 5,
            "eval.base_failed_lines": 0, "label": "x", "f1.mean": 0.5
        }));
        let baseline = map(json!({"accuracy": 0.8}));
        let got = summary_metrics(&metrics, Some(&baseline));
        assert_eq!(
            got,
            vec![
                ("accuracy".to_string(), 0.9, Some(0.8)),
                ("flow.success_rate".to_string(), 1.0, None),
                ("f1.mean".to_string(), 0.5, None),
            ]
        );
    }

    #[test]
    fn verdict_precedence_flow_then_base_lines_then_offline_then_gates() {
        let pass = GateResult {
            name: "a>=1".into(),
            passed: true,
            actual: Some(1.0),
            expected: ">= 1".into(),
            verdict: "PASS".into(),
        };
        let fail = GateResult {
            passed: false,
            verdict: "FAIL".into(),
            ..pass.clone()
        };
        let offline = GateResult {
            name: OFFLINE_GATE.into(),
            ..fail.clone()
        };
        let lines = FlowProblem::LinesFailed {
            failed: 2,
            total: 5,
            resume: "flow eval --resume e".into(),
        };
        let base = |n| FailReason::BaseLines {
            lines: n,
            run: "r".into(),
        };
        // (flow problem, failed base lines, gates, verdict)
        let cases = [
            (None, 0, vec![], Verdict::Passed),
            (None, 0, vec![pass.clone()], Verdict::Passed),
            (
                Some(&lines),
                3,
                vec![fail.clone(), offline.clone()],
                Verdict::Failed(FailReason::EvaluationFlow(lines.clone())),
            ),
            (
                None,
                3,
                vec![fail.clone(), offline.clone()],
                Verdict::Failed(base(3)),
            ),
            (
                None,
                0,
                vec![fail.clone(), offline.clone()],
                Verdict::Inconclusive(Inconclusive::OfflineAnswers { failed_gates: 2 }),
            ),
            (
                None,
                0,
                vec![pass.clone(), fail.clone(), fail.clone()],
                Verdict::Failed(FailReason::Gates { failed: 2 }),
            ),
        ];
        for (problem, base_lines, gates, want) in cases {
            assert_eq!(decide(problem, base_lines, "r", &[], &gates), want);
        }
    }

    #[test]
    fn verdict_messages_say_what_failed() {
        let cases = [
            (
                Verdict::Failed(FailReason::EvaluationFlow(FlowProblem::LinesFailed {
                    failed: 2,
                    total: 5,
                    resume: "flow eval --resume e".into(),
                })),
                "2 of 5 lines failed. Rerun just those with: flow eval --resume e",
            ),
            (
                Verdict::Failed(FailReason::EvaluationFlow(FlowProblem::Aggregation(
                    "boom".into(),
                ))),
                "aggregation failed: boom",
            ),
            (
                Verdict::Failed(FailReason::BaseLines {
                    lines: 1,
                    run: "main".into(),
                }),
                "1 line(s) of run `main` failed; they count as failed evaluations",
            ),
            (
                Verdict::Failed(FailReason::Gates { failed: 3 }),
                "3 gate(s) failed",
            ),
        ];
        for (verdict, text) in cases {
            assert_eq!(verdict.to_string(), text);
        }
    }

    fn finished(total: usize, failed: usize) -> RunMeta {
        serde_json::from_value(json!({
            "name": "ev", "flow": "f", "flow_name": "f", "variant": "default",
            "status": "Completed", "created": "2026-12-06T00:00:00Z", "total_lines": total,
            "completed_lines": total - failed, "failed_lines": failed,
            "tokens": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "latency_ms": {"p50": 0.0, "p90": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0},
            "concurrency": 1, "flow_version": "test",
        }))
        .unwrap()
    }

    fn error(kind: ErrorKind) -> ErrorInfo {
        serde_json::from_value(json!({"kind": kind, "message": "boom"})).unwrap()
    }

    #[test]
    fn a_finished_batch_is_judged_stops_first_then_aggregation_then_lines() {
        use crate::batch::BatchOutcome;
        use crate::record::AggregationResult;
        let outcome =
            |unusable: bool, canceled: bool, aggregation_error: bool, errors: &[ErrorKind]| {
                BatchOutcome {
                    endpoint_unusable: unusable.then(|| error(ErrorKind::Endpoint)),
                    canceled,
                    aggregation: Some(AggregationResult {
                        nodes: Vec::new(),
                        metrics: Map::new(),
                        error: aggregation_error.then(|| error(ErrorKind::Provider)),
                    }),
                    first_errors: errors
                        .iter()
                        .enumerate()
                        .map(|(n, k)| (n, error(*k)))
                        .collect(),
                    ..BatchOutcome::default()
                }
            };
        let lines = |failed, total| FlowProblem::LinesFailed {
            failed,
            total,
            resume: "flow run --resume ev".into(),
        };
        let endpoint = [ErrorKind::Endpoint, ErrorKind::Endpoint];
        let mixed = [ErrorKind::Endpoint, ErrorKind::Provider];
        // (meta, outcome, allow_failures, judged)
        let cases = [
            (
                finished(3, 0),
                outcome(false, false, false, &[]),
                false,
                Ok(None),
            ),
            (
                finished(3, 1),
                outcome(true, true, true, &endpoint),
                false,
                Err("unusable"),
            ),
            (
                finished(3, 1),
                outcome(false, true, true, &endpoint),
                false,
                Err("canceled"),
            ),
            (
                finished(3, 1),
                outcome(false, false, true, &mixed),
                false,
                Ok(Some(FlowProblem::Aggregation("boom".into()))),
            ),
            (
                finished(3, 1),
                outcome(false, false, false, &mixed),
                false,
                Ok(Some(lines(1, 3))),
            ),
            (
                finished(3, 1),
                outcome(false, false, false, &mixed),
                true,
                Ok(None),
            ),
            (
                finished(2, 2),
                outcome(false, false, false, &mixed),
                true,
                Ok(Some(lines(2, 2))),
            ),
            (
                finished(2, 2),
                outcome(false, false, false, &endpoint),
                false,
                Err("every line"),
            ),
            (
                finished(3, 1),
                outcome(false, false, false, &endpoint),
                false,
                Ok(Some(lines(1, 3))),
            ),
        ];
        for (i, (meta, outcome, allow, want)) in cases.into_iter().enumerate() {
            let got = judge_batch(&meta, &outcome, allow, "flow run --resume ev");
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "case {i}"),
                (Err(BatchStop::EndpointUnusable { .. }), Err("unusable"))
                | (Err(BatchStop::Canceled { .. }), Err("canceled"))
                | (Err(BatchStop::EveryLineEndpoint { .. }), Err("every line")) => {}
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }
}
